//! Waits that say the truth: a signal stops the rollout's wait at the next poll, and an API server
//! that stops answering is reported as unreachable (not as a rollout still waiting) within 30 s.

use crate::interrupt::Stop;
use crate::report::{OutputFormat, Reporter};

use super::*;

/// Controllers that never act: the rollout stays where the apply left it.
fn idle() -> Controllers {
    Box::new(|_: &mut Store| {})
}

/// A context whose steps answer to `Stop` instead of the process's signals.
fn context_with_stop() -> (Context, tempfile::TempDir, Stop) {
    let (mut ctx, state) = context();
    let stop = Stop::default();
    ctx.reporter = Reporter::with_stop(OutputFormat::Json, stop.clone());
    (ctx, state, stop)
}

/// Deploys 1.0.0, then applies 2.0.0 under controllers that never act: the rollout of 2.0.0 waits.
fn apply_stuck_release(fake: &FakeApiServer, ctx: &Context) -> (KubernetesTarget, Release) {
    let env = environment();
    deploy(ctx, &fake.target(overlay(), false), "1.0.0").expect("1.0.0 becomes healthy");
    fake.set_controllers(idle());
    let target = fake.target(overlay(), false);
    let release = env.release("2.0.0");
    let mut step = ctx.reporter.step("applying 2.0.0");
    target
        .apply(&env, &release, Instant::now() + TIMEOUT, &mut step)
        .expect("2.0.0 is applied");
    step.ok("");
    (target, release)
}

#[test]
fn a_signal_during_the_rollout_stops_the_wait_at_the_next_poll() {
    let fake = FakeApiServer::start();
    let (ctx, _state, stop) = context_with_stop();
    let env = environment();
    let (target, release) = apply_stuck_release(&fake, &ctx);
    let signal = stop.clone();
    fake.after_request(on_deployment_read(2, move || {
        signal.request();
        false
    }));
    let started = Instant::now();
    let mut step = ctx.reporter.step("waiting");
    let diagnosis = target
        .wait_healthy(
            &env,
            &release,
            Instant::now() + Duration::from_secs(20),
            &mut step,
        )
        .expect_err("the wait stops");
    step.failed("");
    assert_eq!(diagnosis.stopped, Stopped::Interrupted, "{diagnosis:?}");
    assert!(
        diagnosis.cause.contains("the rollout of 2.0.0"),
        "{}",
        diagnosis.cause
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at the next poll, took {:?}",
        started.elapsed()
    );
}

#[test]
fn an_api_server_that_stops_answering_mid_rollout_is_unreachable_within_30_s() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    let (target, release) = apply_stuck_release(&fake, &ctx);
    fake.after_request(on_deployment_read(2, || true));
    let started = Instant::now();
    let mut step = ctx.reporter.step("waiting");
    let diagnosis = target
        .wait_healthy(&env, &release, Instant::now() + TIMEOUT, &mut step)
        .expect_err("the API server is gone");
    step.failed("");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert_eq!(diagnosis.stopped, Stopped::Unreachable, "{diagnosis:?}");
    for part in [
        "the API server at https://fake-api-server.invalid stopped answering during the rollout of 2.0.0",
        "connection refused",
    ] {
        assert!(
            diagnosis.cause.contains(part),
            "{part} not in {}",
            diagnosis.cause
        );
    }
    assert!(
        !diagnosis.cause.contains("waiting for"),
        "not a rollout still waiting: {}",
        diagnosis.cause
    );
    // Three unanswered polls, each of a few requests, and nothing after the verdict.
    let refused = fake.requests().iter().filter(|r| r.refused).count();
    assert!((3..=30).contains(&refused), "{refused} unanswered requests");
}

#[test]
fn an_apply_without_answer_is_unreachable_and_names_what_was_being_applied() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    let target = fake.target(overlay(), false);
    // The namespace is applied; the ApplySet parent, next, gets no answer.
    let namespace = NAMESPACE_PATH.to_string();
    fake.after_request(move |request, _| request.is("PATCH", &namespace));
    let mut step = ctx.reporter.step("applying");
    let diagnosis = target
        .apply(
            &env,
            &env.release("1.0.0"),
            Instant::now() + TIMEOUT,
            &mut step,
        )
        .expect_err("the API server is gone");
    step.failed("");
    assert_eq!(diagnosis.stopped, Stopped::Unreachable, "{diagnosis:?}");
    assert!(
        diagnosis.cause.contains(
            "the API server at https://fake-api-server.invalid stopped answering while ConfigMap"
        ),
        "{}",
        diagnosis.cause
    );
}

#[test]
fn a_smoke_test_without_answer_says_the_api_server_is_unreachable() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    let target = fake.target(overlay(), false);
    deploy(&ctx, &target, "1.0.0").expect("1.0.0 becomes healthy");
    assert_eq!(target.smoke(&env).unwrap().version, "1.0.0");
    fake.stop_answering();
    let error = target.smoke(&env).expect_err("no answer");
    assert!(
        error.contains("the API server at https://fake-api-server.invalid is unreachable"),
        "{error}"
    );
    assert!(error.contains("what runs now is unknown"), "{error}");
}

#[test]
fn the_app_can_report_another_version_than_its_image_tag() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    let target = fake.target(overlay(), false);
    deploy(&ctx, &target, "1.0.0").expect("1.0.0 becomes healthy");
    fake.report_version("0.9.9");
    assert_eq!(target.smoke(&env).unwrap().version, "0.9.9");
}

#[test]
fn an_api_server_that_hangs_mid_rollout_is_unreachable_within_30_s() {
    let fake = FakeApiServer::start();
    let (ctx, _state) = context();
    let env = environment();
    let (target, release) = apply_stuck_release(&fake, &ctx);
    fake.hang_when_not_answering();
    fake.after_request(on_deployment_read(2, || true));
    let started = Instant::now();
    let mut step = ctx.reporter.step("waiting");
    let diagnosis = target
        .wait_healthy(&env, &release, Instant::now() + TIMEOUT, &mut step)
        .expect_err("the API server is gone");
    step.failed("");
    let elapsed = started.elapsed();
    // Three polls of at most 5 s each, a second apart.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_secs(15),
        "each poll waited 5 s: {elapsed:?}"
    );
    assert_eq!(diagnosis.stopped, Stopped::Unreachable, "{diagnosis:?}");
    assert!(
        diagnosis
            .cause
            .contains("stopped answering during the rollout of 2.0.0 (no answer within 5 s)"),
        "{}",
        diagnosis.cause
    );
}
