//! Why a release is not healthy, read from its container's state and log.

use std::time::Duration;

use crate::docker::ContainerState;

/// What the app logs when the database refuses its credentials (the server's own words).
pub const ACCESS_DENIED: &str = "Access denied";

/// The last `keep` log lines without the request lines of health probes (the healthcheck's and
/// the deployer's own `/readyz` and `/healthz` calls), which would otherwise fill the tail.
pub fn without_probes(lines: Vec<String>, keep: usize) -> Vec<String> {
    let mut kept: Vec<String> = lines
        .into_iter()
        .filter(|l| !(l.contains("\"route\":\"/readyz\"") || l.contains("\"route\":\"/healthz\"")))
        .collect();
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    kept
}

/// The most likely reason a release is not healthy, in one sentence.
pub fn likely_cause(
    state: &ContainerState,
    log_tail: &[String],
    timed_out: Option<Duration>,
) -> String {
    let logs = log_tail.join("\n");
    if logs.contains(ACCESS_DENIED) {
        return "the database refused the app's credentials (\"Access denied\"): the password secret does not \
                match the database's; if the data volume predates the secrets, restore the old secret files \
                or purge the data (`deployer down --purge-data`)"
            .into();
    }
    if state.is_crashing() {
        return format!(
            "the app process exits at start (exit code {}): see its last log lines below",
            state.exit_code
        );
    }
    if state.health.as_deref() == Some("unhealthy") {
        return "the app runs but its healthcheck fails (`challenge healthcheck`: /readyz is not 200)".into();
    }
    match timed_out {
        Some(limit) => format!(
            "the app was not healthy within {}s (health: {}); raise --timeout if it is just slow",
            limit.as_secs(),
            state.health.as_deref().unwrap_or("no healthcheck")
        ),
        None => "the app is not healthy".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, health: Option<&str>, exit_code: i64, restarts: u64) -> ContainerState {
        ContainerState {
            status: status.into(),
            health: health.map(String::from),
            exit_code,
            restart_count: restarts,
            ..ContainerState::default()
        }
    }

    #[test]
    fn wrong_password_is_named_before_anything_else() {
        let logs =
            vec!["ERROR database: Access denied for user 'challenge'@'10.0.0.3'".to_string()];
        let cause = likely_cause(
            &state("running", Some("starting"), 0, 0),
            &logs,
            Some(Duration::from_secs(60)),
        );
        assert!(cause.contains("refused the app's credentials"), "{cause}");
    }

    #[test]
    fn crash_loop_names_the_exit_code() {
        let cause = likely_cause(&state("restarting", Some("starting"), 1, 3), &[], None);
        assert!(cause.contains("exit code 1"), "{cause}");
    }

    #[test]
    fn timeout_says_how_long_and_what_to_do() {
        let cause = likely_cause(
            &state("running", Some("starting"), 0, 0),
            &[],
            Some(Duration::from_secs(90)),
        );
        assert!(
            cause.contains("within 90s") && cause.contains("--timeout"),
            "{cause}"
        );
    }

    #[test]
    fn probe_request_lines_are_left_out_of_the_tail() {
        let lines = vec![
            r#"{"level":"WARN","message":"database not usable yet","error":"Access denied"}"#
                .to_string(),
            r#"{"message":"request","route":"/readyz","status":503}"#.to_string(),
            r#"{"message":"request","route":"/api/tasks","status":200}"#.to_string(),
            r#"{"message":"request","route":"/healthz","status":200}"#.to_string(),
        ];
        let kept = without_probes(lines.clone(), 30);
        assert_eq!(kept, [lines[0].clone(), lines[2].clone()]);
        assert_eq!(without_probes(lines, 1).len(), 1);
    }
}
