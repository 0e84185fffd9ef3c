//! The rules the GitHub Actions workflow must follow.

use serde_yaml_ng::Value;

use super::{StageCall, ci_command};

/// The workflow's `cargo xtask ci` steps in job order (notify excepted), or the rules it breaks.
pub fn check(source: &str) -> Result<Vec<StageCall>, Vec<String>> {
    let doc: Value = serde_yaml_ng::from_str(source)
        .map_err(|e| vec![format!("the workflow is not YAML: {e}")])?;
    let mut errors = Vec::new();
    if doc
        .get("concurrency")
        .and_then(|c| c.get("group"))
        .and_then(Value::as_str)
        .is_none_or(|g| !g.contains("github.ref"))
    {
        errors.push("the workflow needs a `concurrency` group per branch (github.ref)".to_string());
    }
    if yaml_text(doc.get("env")).contains("secrets.") {
        errors.push(
            "workflow-level `env` must not hold secrets: pass them to the steps that need them"
                .to_string(),
        );
    }
    let Some(jobs) = doc.get("jobs").and_then(Value::as_mapping) else {
        return Err(vec!["the workflow has no jobs".to_string()]);
    };
    let mut calls = Vec::new();
    let mut notify = 0;
    let mut previous: Option<&str> = None;
    for (id, job) in jobs {
        let id = id.as_str().unwrap_or("?");
        let needs: Vec<&str> = match job.get("needs") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Sequence(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(prev) = previous.filter(|p| !needs.contains(p)) {
            errors.push(format!("job `{id}` must need `{prev}`, the job before it"));
        }
        previous = Some(id);
        if yaml_text(job.get("env")).contains("secrets.") {
            errors.push(format!("job `{id}`: job-level `env` must not hold secrets"));
        }
        let environment = job
            .get("environment")
            .and_then(|e| e.as_str().or_else(|| e.get("name").and_then(Value::as_str)));
        for step in job
            .get("steps")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let Some(run) = step.get("run").and_then(Value::as_str) else {
                continue;
            };
            let name = step
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let command = match ci_command(run.trim()) {
                Ok(command) => command,
                Err(e) => {
                    errors.push(format!("job `{id}`, step `{name}`: {e}"));
                    continue;
                }
            };
            if command == "notify" {
                notify += 1;
                if job.get("if").and_then(Value::as_str) != Some("always()") {
                    errors.push(format!("job `{id}`: notify must run `if: always()`"));
                }
                continue;
            }
            if let Some(env) = command
                .strip_prefix("deploy ")
                .or_else(|| command.strip_prefix("smoke "))
                && environment != Some(env)
            {
                errors.push(format!(
                    "job `{id}`: `{command}` must run in the `{env}` environment"
                ));
            }
            calls.push(StageCall { name, command });
        }
    }
    if notify != 1 {
        errors.push(format!(
            "the workflow must run `cargo xtask ci notify` once (it does {notify} times)"
        ));
    }
    if errors.is_empty() {
        Ok(calls)
    } else {
        Err(errors)
    }
}

fn yaml_text(value: Option<&Value>) -> String {
    value
        .map(|v| serde_yaml_ng::to_string(v).unwrap_or_default())
        .unwrap_or_default()
}
