//! The interactive mode, driven through a pseudo-terminal the way a person answers it: platform,
//! environment, version (keeping the running one, the default), confirmation.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Api, TestEnv, V1};
use expectrl::session::OsSession;
use expectrl::{Expect, Session};

fn spawn(env: &TestEnv) -> OsSession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployer"));
    env.global_flags(&mut cmd);
    cmd.env("TERM", "xterm-256color").env_remove("DEPLOYER_ENV");
    let mut session = Session::spawn(cmd).expect("spawning the deployer on a pty");
    session.set_expect_timeout(Some(Duration::from_secs(240)));
    session
}

fn exit_code(session: &OsSession) -> i32 {
    match session.get_process().wait() {
        Ok(expectrl::process::unix::WaitStatus::Exited(_, code)) => code,
        other => panic!("the deployer did not exit normally: {other:?}"),
    }
}

#[test]
fn interactive_deploy_keeps_the_running_version() {
    let mut env = TestEnv::new("pty");
    env.tag(V1);
    env.deploy_ok(V1);
    let api = Api::new(&env.url());
    api.create_task("made before the interactive deploy");

    let mut session = spawn(&env);
    session
        .expect("Deploy on which platform?")
        .expect("platform question");
    session.send("\r").unwrap(); // the default: Docker Compose
    session.expect("Environment").expect("environment question");
    session.send_line(&env.name).unwrap();
    session.expect("Which version?").expect("version question");
    session
        .expect(format!("{V1}  (running now: keep it)").as_str())
        .expect("the running version is offered first");
    session.send("\r").unwrap(); // keep it
    session
        .expect("Deploy?")
        .expect("confirmation with a summary");
    session.send("y").unwrap();
    session
        .expect("is healthy at")
        .expect("the deploy succeeds");
    let equivalent = format!(
        "deploy --target compose --env {} --version {V1} --yes",
        env.name
    );
    session
        .expect(equivalent.as_str())
        .expect("the equivalent command is printed");
    assert_eq!(exit_code(&session), 0);

    assert_eq!(env.status()["version"], V1);
    assert!(
        api.titles()
            .iter()
            .any(|t| t == "made before the interactive deploy")
    );
}

#[test]
fn choosing_kubernetes_asks_the_cluster_and_says_when_there_is_none() {
    let env = TestEnv::new("k8s");
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kubeconfig.path(), common::UNREACHABLE_KUBECONFIG).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployer"));
    env.global_flags(&mut cmd);
    cmd.env("TERM", "xterm-256color")
        .env("KUBECONFIG", kubeconfig.path())
        .env_remove("DEPLOYER_ENV");
    let mut session = Session::spawn(cmd).expect("spawning the deployer on a pty");
    session.set_expect_timeout(Some(Duration::from_secs(60)));
    session
        .expect("Deploy on which platform?")
        .expect("platform question");
    session.send("\x1b[B").unwrap(); // arrow down: Kubernetes
    session.send("\r").unwrap();
    // The environment question, then the version question reads the cluster: there is none.
    session
        .expect("Environment")
        .expect("the environment question");
    session.send("qa\r").unwrap();
    session
        .expect("the Kubernetes API is not reachable: context unreachable-test")
        .expect("names the context it tried");
    assert_eq!(exit_code(&session), 3);
}

#[test]
fn quitting_deploys_nothing() {
    let env = TestEnv::new("quit");
    let mut session = spawn(&env);
    session
        .expect("Deploy on which platform?")
        .expect("platform question");
    session.send("\x1b[B\x1b[B").unwrap(); // to "[S] quit"
    session.send("\r").unwrap();
    session.expect("nothing deployed").expect("says so");
    assert_eq!(exit_code(&session), 0);
    assert!(env.containers().is_empty());
}
