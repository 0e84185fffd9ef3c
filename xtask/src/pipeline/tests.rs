//! Each rule, shown to fail on a small Jenkinsfile or workflow that breaks it.

use super::{StageCall, ci_command, jenkins, same_stages, workflow};

/// A minimal pipeline that follows every rule: `{stages}` and `{post}` are replaced.
const TEMPLATE: &str = r#"
pipeline {
    agent none
    stages {
        stage('Build') {
            agent { label 'rust-docker' }
            stages {
                stage('Lint') {
                    steps {
                        sh 'cargo xtask ci lint'
                    }
                }
                stage('Push') {
                    steps {
                        withCredentials([usernamePassword(credentialsId: 'registry',
                                usernameVariable: 'REGISTRY_USERNAME', passwordVariable: 'REGISTRY_PASSWORD')]) {
                            sh 'echo "$REGISTRY_PASSWORD" | docker login -u "$REGISTRY_USERNAME" --password-stdin'
                            sh 'cargo xtask ci push'
                        }
                    }
                }
            }
        }
        APPROVAL
        stage('Deploy PROD') {
            agent { label 'rust-kubectl' }
            steps {
                withCredentials([file(credentialsId: 'kubeconfig-prod', variable: 'KUBECONFIG')]) {
                    sh 'cargo xtask ci deploy prod'
                }
            }
        }
    }
    post {
        failure {
            node('rust-docker') {
                withCredentials([string(credentialsId: 'notify', variable: 'NOTIFY_WEBHOOK_URL')]) {
                    sh 'cargo xtask ci notify'
                }
            }
        }
    }
}
"#;

const APPROVAL: &str = r#"stage('Approve PROD') {
            agent none
            options { timeout(time: 1, unit: 'DAYS') }
            input {
                message 'Deploy?'
                submitter 'prod-approvers'
            }
            steps { echo 'approved' }
        }"#;

fn jenkinsfile() -> String {
    TEMPLATE.replace("APPROVAL", APPROVAL)
}

fn errors(source: &str) -> String {
    match jenkins::check(source) {
        Ok(calls) => panic!("expected a rule to fail, got {calls:?}"),
        Err(errors) => errors.join("\n"),
    }
}

fn call(name: &str, command: &str) -> StageCall {
    StageCall {
        name: name.into(),
        command: command.into(),
    }
}

#[test]
fn a_pipeline_that_follows_the_rules_passes_with_its_stages_in_order() {
    let calls = jenkins::check(&jenkinsfile()).expect("valid");
    assert_eq!(
        calls,
        [
            call("Lint", "lint"),
            call("Push", "push"),
            call("Deploy PROD", "deploy prod")
        ]
    );
}

#[test]
fn pipeline_without_agent_none_fails() {
    let source = jenkinsfile().replacen("agent none", "agent any", 1);
    assert!(errors(&source).contains("agent none"));
}

#[test]
fn stage_with_two_ci_calls_fails() {
    let source = jenkinsfile().replace(
        "sh 'cargo xtask ci lint'",
        "sh 'cargo xtask ci lint'\n sh 'cargo xtask ci test'",
    );
    assert!(errors(&source).contains("exactly one `cargo xtask ci <stage>` (it calls 2)"));
}

#[test]
fn stage_with_another_shell_command_fails() {
    let source = jenkinsfile().replace("sh 'cargo xtask ci lint'", "sh 'make lint'");
    assert!(errors(&source).contains("it calls 0"));
    let source = jenkinsfile().replace(
        "sh 'cargo xtask ci lint'",
        "sh 'cargo build'\n sh 'cargo xtask ci lint'",
    );
    assert!(errors(&source).contains("`sh 'cargo build'` besides"));
}

#[test]
fn stage_with_another_step_fails() {
    let source = jenkinsfile().replace(
        "sh 'cargo xtask ci lint'",
        "sh 'cargo xtask ci lint'\n archiveArtifacts 'x'",
    );
    assert!(errors(&source).contains("step `archiveArtifacts`"));
}

#[test]
fn unknown_stage_or_environment_fails() {
    let source = jenkinsfile().replace("ci lint", "ci release");
    assert!(errors(&source).contains("`cargo xtask ci release` is not a stage"));
    let source = jenkinsfile().replace("ci deploy prod", "ci deploy staging");
    assert!(errors(&source).contains("deploy takes one environment"));
}

#[test]
fn double_quoted_sh_fails_even_without_a_secret() {
    let source = jenkinsfile().replace("sh 'cargo xtask ci lint'", "sh \"cargo xtask ci lint\"");
    assert!(errors(&source).contains("single-quoted"));
}

#[test]
fn credential_used_outside_its_wrapper_fails() {
    // A credential variable read after its withCredentials block closed.
    let source = jenkinsfile().replace(
        "sh 'cargo xtask ci deploy prod'\n                }",
        "sh 'cargo xtask ci deploy prod'\n                }\n                sh 'cat $KUBECONFIG'",
    );
    assert!(errors(&source).contains("outside `withCredentials`"));
    // Pipeline-wide binding with credentials() in an environment block.
    let source = jenkinsfile().replacen(
        "agent none",
        "agent none\n    environment { TOKEN = credentials('sonar') }",
        1,
    );
    assert!(errors(&source).contains("outside `withCredentials`"));
}

#[test]
fn prod_deploy_without_an_approval_fails() {
    let source = TEMPLATE.replace("APPROVAL", "");
    assert!(errors(&source).contains("after a stage with an `input`"));
}

#[test]
fn approval_after_the_prod_deploy_fails() {
    let source = TEMPLATE.replace("APPROVAL", "").replace(
        "    }\n    post {",
        &format!("    {APPROVAL}\n    }}\n    post {{"),
    );
    assert!(errors(&source).contains("after a stage with an `input`"));
}

#[test]
fn approval_without_submitter_timeout_or_agent_none_fails() {
    let source = jenkinsfile().replace("submitter 'prod-approvers'", "");
    assert!(errors(&source).contains("must name a `submitter`"));
    let source = jenkinsfile().replace("options { timeout(time: 1, unit: 'DAYS') }", "");
    assert!(errors(&source).contains("needs `options { timeout(...) }`"));
    let source = jenkinsfile().replace(
        "agent none\n            options",
        "agent { label 'x' }\n            options",
    );
    assert!(errors(&source).contains("holds no executor"));
}

#[test]
fn pipeline_without_notify_in_post_fails() {
    let source = jenkinsfile().replace("sh 'cargo xtask ci notify'", "echo 'done'");
    assert!(errors(&source).contains("`post` must run `cargo xtask ci notify`"));
}

#[test]
fn groovy_reader_keeps_quotes_and_drops_comments() {
    let stmts =
        super::groovy::parse("// sh \"x\"\nsh '''a\nb''' /* { */\nfoo(a,\n b) { bar \"$X\" }\n")
            .expect("parses");
    assert_eq!(stmts.len(), 2);
    assert_eq!(stmts[0].first_string(), Some(("a\nb", false)));
    assert_eq!(stmts[1].head(), Some("foo"));
    assert_eq!(stmts[1].children()[0].first_string(), Some(("$X", true)));
    assert!(super::groovy::parse("a {").is_err());
    assert!(super::groovy::parse("}").is_err());
}

#[test]
fn ci_commands_are_single_calls() {
    assert_eq!(
        ci_command("cargo xtask ci smoke qa"),
        Ok("smoke qa".to_string())
    );
    assert!(ci_command("cargo xtask ci lint && rm -rf /").is_err());
    assert!(ci_command("cargo xtask ci deploy").is_err());
    assert!(ci_command("cargo test").is_err());
}

const WORKFLOW: &str = r#"
name: pipeline
concurrency:
  group: pipeline-${{ github.ref }}
jobs:
  build:
    runs-on: [self-hosted]
    steps:
      - name: Lint
        run: cargo xtask ci lint
  prod:
    needs: build
    environment: prod
    runs-on: [self-hosted]
    steps:
      - name: Deploy PROD
        env:
          KUBECONFIG_DATA: ${{ secrets.KUBECONFIG }}
        run: cargo xtask ci deploy prod
  notify:
    needs: [build, prod]
    if: always()
    runs-on: [self-hosted]
    steps:
      - name: Notify
        run: cargo xtask ci notify
"#;

fn workflow_errors(source: &str) -> String {
    match workflow::check(source) {
        Ok(calls) => panic!("expected a rule to fail, got {calls:?}"),
        Err(errors) => errors.join("\n"),
    }
}

#[test]
fn a_workflow_that_follows_the_rules_passes() {
    let calls = workflow::check(WORKFLOW).expect("valid");
    assert_eq!(
        calls,
        [call("Lint", "lint"), call("Deploy PROD", "deploy prod")]
    );
}

#[test]
fn workflow_rules_fail_when_broken() {
    let broken = WORKFLOW.replace("    needs: build\n", "");
    assert!(workflow_errors(&broken).contains("must need `build`"));
    let broken = WORKFLOW.replace("    environment: prod\n", "");
    assert!(workflow_errors(&broken).contains("in the `prod` environment"));
    let broken = WORKFLOW.replace("run: cargo xtask ci lint", "run: cargo clippy");
    assert!(workflow_errors(&broken).contains("not one `cargo xtask ci <stage>` call"));
    let broken = WORKFLOW.replace("    if: always()\n", "");
    assert!(workflow_errors(&broken).contains("if: always()"));
    let broken = WORKFLOW.replace("concurrency:\n  group: pipeline-${{ github.ref }}\n", "");
    assert!(workflow_errors(&broken).contains("concurrency"));
    let broken = WORKFLOW.replace("jobs:\n", "env:\n  T: ${{ secrets.T }}\njobs:\n");
    assert!(workflow_errors(&broken).contains("workflow-level `env`"));
}

#[test]
fn files_with_different_stages_or_order_fail() {
    let jenkins = [call("Lint", "lint"), call("Test", "test")];
    let swapped = [call("Test", "test"), call("Lint", "lint")];
    assert!(same_stages(&jenkins, &swapped).is_err());
}

#[test]
fn the_repository_files_follow_the_rules() {
    let root = crate::util::project_root();
    let jenkinsfile = std::fs::read_to_string(root.join(super::JENKINSFILE)).expect("Jenkinsfile");
    let workflow = std::fs::read_to_string(root.join(super::WORKFLOW)).expect("workflow");
    let jenkins = jenkins::check(&jenkinsfile).expect("Jenkinsfile follows the rules");
    let actions = workflow::check(&workflow).expect("workflow follows the rules");
    same_stages(&jenkins, &actions).expect("same stages");
}
