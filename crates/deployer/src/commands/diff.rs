//! `deployer diff`: what deploying a version would change against what runs, as a gate a
//! pipeline can use (exit 0 when nothing would change, 8 when something would).

use serde_json::json;

use crate::cli::DiffArgs;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan;
use crate::platform::{ChangeAction, Changes};
use crate::report::one_line;

pub fn diff(ctx: &Context, args: DiffArgs) -> Result<()> {
    let target = ctx.target(args.target)?;
    let env = ctx.environment(&ctx.env_or_default())?;
    let release = env.release(&plan::parse_version(&args.version)?);
    let changes = target.diff(&env, &release)?;
    ctx.reporter.result(
        json!({
            "env": env.name, "target": target.name(), "version": release.version,
            "changed": !changes.changes.is_empty(), "changes": changes.changes, "unchanged": changes.unchanged,
        }),
        || text(&env.name, &release.version, &changes),
    );
    if changes.changes.is_empty() {
        Ok(())
    } else {
        Err(Error::Changes(format!(
            "deploying {} to {} would change {} object(s)",
            release.version,
            env.name,
            changes.changes.len()
        )))
    }
}

/// The changes for a person: one line per object, one indented line per field.
pub fn text(env: &str, version: &str, changes: &Changes) -> String {
    if changes.changes.is_empty() {
        return format!("deploying {version} to {env} would change nothing\n");
    }
    let mut text = format!("deploying {version} to {env} would change:\n");
    for change in &changes.changes {
        match change.action {
            ChangeAction::Create => {
                text.push_str(&format!("+ {} (created)\n", one_line(&change.object)));
            }
            ChangeAction::Delete => {
                text.push_str(&format!("- {} (deleted)\n", one_line(&change.object)));
            }
            ChangeAction::Update => {
                text.push_str(&format!("~ {}\n", one_line(&change.object)));
                for field in &change.fields {
                    let value = |v: &Option<String>| {
                        v.as_deref()
                            .map_or("(absent)".to_string(), |v| one_line(v).into_owned())
                    };
                    text.push_str(&format!(
                        "    {}: {} -> {}{}\n",
                        one_line(&field.path),
                        value(&field.before),
                        value(&field.after),
                        field
                            .owner
                            .as_deref()
                            .map(|o| format!(
                                "  (owned by {}: a conflict unless --force-conflicts)",
                                one_line(o)
                            ))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
    if !changes.unchanged.is_empty() {
        text.push_str(&format!(
            "= unchanged: {}\n",
            one_line(&changes.unchanged.join(", "))
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{Change, FieldChange};

    #[test]
    fn changes_read_as_one_line_per_object_and_field() {
        let changes = Changes {
            changes: vec![
                Change {
                    object: "Deployment infra-challenge-qa/challenge".into(),
                    action: ChangeAction::Update,
                    fields: vec![FieldChange {
                        path: "image".into(),
                        before: Some("infra-challenge:1".into()),
                        after: Some("infra-challenge:2".into()),
                        owner: Some("kubectl-edit".into()),
                    }],
                },
                Change {
                    object: "Service infra-challenge-qa/challenge".into(),
                    action: ChangeAction::Create,
                    fields: Vec::new(),
                },
            ],
            unchanged: vec!["ConfigMap infra-challenge-qa/challenge-config".into()],
        };
        assert_eq!(
            text("qa", "2", &changes),
            "deploying 2 to qa would change:\n~ Deployment infra-challenge-qa/challenge\n    image: \
             infra-challenge:1 -> infra-challenge:2  (owned by kubectl-edit: a conflict unless --force-conflicts)\n\
             + Service infra-challenge-qa/challenge (created)\n= unchanged: ConfigMap \
             infra-challenge-qa/challenge-config\n"
        );
        assert_eq!(
            text("qa", "1", &Changes::default()),
            "deploying 1 to qa would change nothing\n"
        );
    }
}
