//! The rules the Jenkinsfile must follow, over its statements (`super::groovy`).

use super::groovy::{Stmt, Tok};
use super::{StageCall, ci_command};

/// The wrappers a stage's one `cargo xtask ci` call may sit in: they bind credentials.
const CREDENTIAL_WRAPPERS: [&str; 2] = ["withCredentials", "withSonarQubeEnv"];
/// What withSonarQubeEnv binds.
const SONAR_VARIABLES: [&str; 2] = ["SONAR_TOKEN", "SONAR_AUTH_TOKEN"];

/// A stage with `steps` (not a group of stages).
struct Leaf<'a> {
    name: String,
    stmt: &'a Stmt,
}

/// The stages' `cargo xtask ci` calls in order, or every rule the file breaks.
pub fn check(source: &str) -> Result<Vec<StageCall>, Vec<String>> {
    let stmts = super::groovy::parse(source).map_err(|e| vec![format!("Jenkinsfile: {e}")])?;
    let mut errors = Vec::new();
    let Some(pipeline) = stmts
        .iter()
        .find(|s| s.head() == Some("pipeline") && s.block.is_some())
    else {
        return Err(vec!["no `pipeline { ... }` block".to_string()]);
    };
    if !is_agent_none(pipeline) {
        errors.push(
            "the pipeline must declare `agent none` at the top (each stage takes its own agent)"
                .to_string(),
        );
    }
    no_double_quoted_sh(&stmts, &mut errors);
    credentials_only_in_wrappers(&stmts, &mut errors);

    let mut leaves = Vec::new();
    if let Some(stages) = pipeline.child("stages") {
        collect_leaves(stages, &mut leaves);
    }
    let mut calls = Vec::new();
    let mut approval: Option<usize> = None;
    for leaf in &leaves {
        let steps = leaf.stmt.child("steps").map(Stmt::children).unwrap_or(&[]);
        let mut shells = Vec::new();
        collect(steps, "sh", &mut shells);
        let ci: Vec<&Stmt> = shells
            .iter()
            .copied()
            .filter(|s| sh_text(s).starts_with("cargo xtask ci"))
            .collect();
        if leaf.stmt.child("input").is_some() || contains(steps, "waitForQualityGate") {
            if !shells.is_empty() {
                errors.push(format!(
                    "stage `{}` waits for a person or a gate: it must run no `sh`",
                    leaf.name
                ));
            }
            if !is_agent_none(leaf.stmt) {
                errors.push(format!(
                    "stage `{}` waits: it must say `agent none` so it holds no executor",
                    leaf.name
                ));
            }
            if let Some(input) = leaf.stmt.child("input") {
                approval = Some(calls.len());
                if input.child("submitter").is_none() {
                    errors.push(format!(
                        "stage `{}`: its input must name a `submitter`",
                        leaf.name
                    ));
                }
                let timeout = leaf
                    .stmt
                    .child("options")
                    .is_some_and(|o| contains(o.children(), "timeout"));
                if !timeout {
                    errors.push(format!(
                        "stage `{}`: its input needs `options {{ timeout(...) }}`",
                        leaf.name
                    ));
                }
            }
            continue;
        }
        if ci.len() != 1 {
            errors.push(format!(
                "stage `{}` must call exactly one `cargo xtask ci <stage>` (it calls {})",
                leaf.name,
                ci.len()
            ));
            continue;
        }
        for other in shells
            .iter()
            .filter(|s| !sh_text(s).starts_with("cargo xtask ci"))
        {
            let text = sh_text(other);
            if !(text.contains("docker login") && text.contains("--password-stdin")) {
                errors.push(format!(
                    "stage `{}` (line {}): `sh '{text}'` besides its `cargo xtask ci` call (only a docker login reading the password from stdin may precede it)",
                    leaf.name, other.line
                ));
            }
        }
        for step in steps {
            only_wrappers_and_sh(step, &leaf.name, &mut errors);
        }
        match ci_command(sh_text(ci[0])) {
            Ok(command) => calls.push(StageCall {
                name: leaf.name.clone(),
                command,
            }),
            Err(e) => errors.push(format!("stage `{}`: {e}", leaf.name)),
        }
    }
    let prod = calls.iter().position(|c| c.command == "deploy prod");
    match (approval, prod) {
        (Some(a), Some(p)) if a <= p => {}
        (_, Some(_)) => errors.push(
            "`deploy prod` must come after a stage with an `input` (the PROD approval)".to_string(),
        ),
        (_, None) => {}
    }
    if let Some(post) = pipeline.child("post") {
        let mut shells = Vec::new();
        collect(post.children(), "sh", &mut shells);
        if !shells.iter().any(|s| sh_text(s) == "cargo xtask ci notify") {
            errors.push("the pipeline's `post` must run `cargo xtask ci notify`".to_string());
        }
    } else {
        errors.push("the pipeline has no `post` section (archive and notify)".to_string());
    }
    if errors.is_empty() {
        Ok(calls)
    } else {
        Err(errors)
    }
}

fn is_agent_none(stmt: &Stmt) -> bool {
    stmt.children().iter().any(|s| {
        s.block.is_none() && s.tokens == [Tok::Ident("agent".into()), Tok::Ident("none".into())]
    })
}

fn collect_leaves<'a>(stages: &'a Stmt, out: &mut Vec<Leaf<'a>>) {
    for stage in stages
        .children()
        .iter()
        .filter(|s| s.head() == Some("stage"))
    {
        let name = stage
            .first_string()
            .map(|(t, _)| t.to_string())
            .unwrap_or_default();
        if let Some(inner) = stage.child("stages") {
            collect_leaves(inner, out);
        } else {
            out.push(Leaf { name, stmt: stage });
        }
    }
}

/// Every statement named `head`, at any depth.
fn collect<'a>(stmts: &'a [Stmt], head: &str, out: &mut Vec<&'a Stmt>) {
    for stmt in stmts {
        if stmt.head() == Some(head) {
            out.push(stmt);
        }
        collect(stmt.children(), head, out);
    }
}

fn contains(stmts: &[Stmt], head: &str) -> bool {
    let mut found = Vec::new();
    collect(stmts, head, &mut found);
    !found.is_empty()
}

fn sh_text(stmt: &Stmt) -> &str {
    stmt.first_string().map(|(t, _)| t).unwrap_or("")
}

fn only_wrappers_and_sh(step: &Stmt, stage: &str, errors: &mut Vec<String>) {
    match step.head() {
        Some("sh") => {}
        Some(head) if CREDENTIAL_WRAPPERS.contains(&head) => {
            for inner in step.children() {
                only_wrappers_and_sh(inner, stage, errors);
            }
        }
        other => errors.push(format!(
            "stage `{stage}` (line {}): step `{}` besides the credential wrappers and the one `cargo xtask ci` call",
            step.line,
            other.unwrap_or("?")
        )),
    }
}

fn no_double_quoted_sh(stmts: &[Stmt], errors: &mut Vec<String>) {
    let mut shells = Vec::new();
    collect(stmts, "sh", &mut shells);
    for sh in shells {
        if sh.first_string().is_none_or(|(_, double)| double) {
            errors.push(format!(
                "line {}: `sh` takes a single-quoted string ('...'); a double-quoted one is a GString Groovy interpolates, which leaks secrets into logs and the process list",
                sh.line
            ));
        }
    }
}

/// The credential variables the file binds, and every mention of them (or of `credentials()`)
/// outside the wrappers that bind them.
fn credentials_only_in_wrappers(stmts: &[Stmt], errors: &mut Vec<String>) {
    let mut wrappers = Vec::new();
    collect(stmts, "withCredentials", &mut wrappers);
    let mut names: Vec<String> = SONAR_VARIABLES.iter().map(|s| s.to_string()).collect();
    for wrapper in wrappers {
        names.extend(
            wrapper
                .named_strings(|k| k.ends_with("Variable") || k == "variable")
                .into_iter()
                .map(String::from),
        );
    }
    outside_wrappers(stmts, &names, errors);
}

fn outside_wrappers(stmts: &[Stmt], names: &[String], errors: &mut Vec<String>) {
    for stmt in stmts {
        if stmt
            .head()
            .is_some_and(|h| CREDENTIAL_WRAPPERS.contains(&h))
        {
            continue;
        }
        for (i, tok) in stmt.tokens.iter().enumerate() {
            let mentions = match tok {
                Tok::Ident(id) if id == "credentials" => {
                    matches!(stmt.tokens.get(i + 1), Some(Tok::Punct('(')))
                }
                Tok::Ident(id) => names.iter().any(|n| n == id),
                Tok::Str { text, .. } => names.iter().any(|n| mentions_word(text, n)),
                Tok::Punct(_) => false,
            };
            if mentions {
                errors.push(format!(
                    "line {}: a credential is used outside `withCredentials`/`withSonarQubeEnv` (bind it there, in the stage that needs it)",
                    stmt.line
                ));
                break;
            }
        }
        outside_wrappers(stmt.children(), names, errors);
    }
}

fn mentions_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}
