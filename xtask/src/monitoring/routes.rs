//! Routing cases for the example Alertmanager configuration: each label set, and the receiver
//! `amtool config routes test` must resolve it to. A change to the routing tree that sends a
//! production page anywhere but the pager fails here.

use std::path::Path;

use anyhow::Context;
use xshell::{Shell, cmd};

/// (what the case pins, receiver, labels of the alert).
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "a production page goes to the pager",
        "prod-pager",
        &[
            "alertname=ChallengeAvailabilityFastBurn",
            "job=challenge",
            "env=prod",
            "severity=page",
            "slo=availability",
        ],
    ),
    (
        "a production target down goes to the pager",
        "prod-pager",
        &[
            "alertname=ChallengeTargetDown",
            "job=challenge",
            "env=prod",
            "severity=page",
            "instance=a:8000",
        ],
    ),
    (
        "a production ticket goes to the ticket system",
        "prod-tickets",
        &[
            "alertname=ChallengeDatabasePoolSaturated",
            "job=challenge",
            "env=prod",
            "severity=ticket",
        ],
    ),
    (
        "a qa page goes to chat, not the pager",
        "nonprod-chat",
        &[
            "alertname=ChallengeNotReady",
            "job=challenge",
            "env=qa",
            "severity=page",
        ],
    ),
    (
        "a dev ticket goes to chat",
        "nonprod-chat",
        &[
            "alertname=ChallengeMultipleVersions",
            "job=challenge",
            "env=dev",
            "severity=ticket",
        ],
    ),
    (
        "a page from the Compose observability profile (env local) goes to chat",
        "nonprod-chat",
        &[
            "alertname=ChallengeTargetDown",
            "job=challenge",
            "env=local",
            "severity=page",
        ],
    ),
    (
        "a page without env (nobody set it) never pages",
        "nonprod-chat",
        &[
            "alertname=ChallengeTargetDown",
            "job=challenge",
            "severity=page",
        ],
    ),
    (
        "env must be exactly prod: production is not prod",
        "nonprod-chat",
        &[
            "alertname=ChallengeLatencyFastBurn",
            "job=challenge",
            "env=production",
            "severity=page",
        ],
    ),
    (
        "a production alert without severity falls back to chat",
        "nonprod-chat",
        &["alertname=SomethingElse", "job=other", "env=prod"],
    ),
];

pub fn check(sh: &Shell, config: &Path) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for &(what, receiver, labels) in CASES {
        let output = cmd!(
            sh,
            "amtool config routes test --config.file {config} --verify.receivers {receiver} {labels...}"
        )
        .quiet()
        .ignore_status()
        .output()
        .context("running amtool config routes test")?;
        let got = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() {
            eprintln!("ok   {what}: {receiver}");
        } else {
            eprintln!("FAIL {what}: expected {receiver}, got {got}");
            failures.push(format!(
                "{what} (labels {}): expected {receiver}, got {got}",
                labels.join(" ")
            ));
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} routing case(s) of {} reach the wrong receiver:\n  {}",
        failures.len(),
        config.display(),
        failures.join("\n  ")
    );
    Ok(())
}
