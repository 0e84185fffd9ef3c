//! Kubernetes manifest checks (`cargo xtask manifests`, and the `manifests` suite of
//! `cargo xtask test`).
//!
//! Every overlay under `deploy/kubernetes/overlays/` and the base are rendered with
//! `kubectl kustomize` (what `kubectl apply -k` would send), then each rendering goes through:
//! yamllint, `kubernetes-validate --strict` for Kubernetes 1.30 and the newest version the pinned
//! package knows, checkov's Kubernetes policies, and our own invariants (`invariants`). The
//! Secret examples, which are never applied, are checked alongside the base and feed the
//! invariants' key lookups everywhere.
//!
//! What the deployer itself applies goes through the same checks: `deployer render --target
//! kubernetes --env prod` (the prod overlay at a release version, with the deployer's ApplySet
//! labels and parent) is one more rendering.
//!
//! Each environment has a namespace of its own, `infra-challenge-<env>` (`namespaces`): each
//! rendering is checked against its environment's, and the overlays against each other.
//!
//! The opt-in parts go through the same checks: each overlay is rendered once more with the
//! observability component added (a temporary kustomization, as a user's overlay would list it
//! under `components:`), and the per-cluster log agent (`deploy/kubernetes/log-agent/`) is a
//! rendering of its own, in its own namespace, the one exception to Pod Security `restricted`
//! (`pod_security`).

mod invariants;
pub mod model;
mod namespaces;
mod pod_security;
mod references;
mod scanners;
mod service_rules;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::{pytools, util};

const KUBERNETES_DIR: &str = "deploy/kubernetes";
/// The observability component, relative to `KUBERNETES_DIR`.
const OBSERVABILITY_COMPONENT: &str = "components/observability";
/// The log agent's kustomization, relative to `KUBERNETES_DIR`.
const LOG_AGENT_DIR: &str = "log-agent";
/// Where renderings are written, for the tools and for a human to read after a failure.
const RENDER_DIR: &str = ".xtask/manifests";
/// The release the deployer's rendering is checked at: prod pulls from a registry (an image
/// without one is taken from the nodes' store, with imagePullPolicy IfNotPresent).
const DEPLOYER_RENDER_REPOSITORY: &str = "registry.example:5000/team/infra-challenge";
const DEPLOYER_RENDER_VERSION: &str = "1.2.3";
/// The Secret templates the base documents but does not apply.
const SECRET_EXAMPLE: &str = "secret.example.yaml";

/// One thing to check: the base, an overlay (with or without the observability component), the
/// deployer's rendering, or the log agent.
struct Rendering {
    /// `base`, `overlays/dev`, `overlays/dev+components/observability`, `log-agent`, ...
    name: String,
    file: PathBuf,
    /// The environment of a plain overlay (its directory's name), for the checks across
    /// environments; None for every other rendering.
    overlay_env: Option<String>,
    /// Where every namespaced object of the rendering must be.
    namespace: String,
    kind: Kind,
}

/// What a rendering holds, which decides the rules it is held to (`invariants::Expected`).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// The service and its database.
    Environment,
    /// The same, with the observability component added.
    ObservedEnvironment,
    /// The per-cluster log agent.
    LogAgent,
}

impl Rendering {
    fn expected(&self) -> invariants::Expected<'_> {
        match self.kind {
            Kind::Environment => invariants::Expected::environment(&self.namespace),
            Kind::ObservedEnvironment => {
                invariants::Expected::observed_environment(&self.namespace)
            }
            Kind::LogAgent => invariants::Expected::log_agent(),
        }
    }
}

pub fn check(sh: &Shell) -> anyhow::Result<()> {
    util::require_program(
        "kubectl",
        "install kubectl 1.27 or newer (it embeds kustomize, which renders the overlays offline)",
    )?;
    pytools::ensure(sh)?;
    let root = util::project_root();
    let kubernetes = root.join(KUBERNETES_DIR);
    let examples = secret_examples(&kubernetes.join("base"))?;

    util::step(
        "kubectl kustomize: base, every overlay (alone and with the observability component), log agent",
    );
    let renderings = render_all(sh, &root, &kubernetes)?;

    util::step("yamllint --strict");
    let mut lint_targets = vec![kubernetes.clone()];
    lint_targets.extend(renderings.iter().map(|r| r.file.clone()));
    scanners::yamllint(sh, &root.join(".yamllint"), &lint_targets)?;

    util::step("kubernetes-validate --strict");
    let mut schema_targets: Vec<PathBuf> = renderings.iter().map(|r| r.file.clone()).collect();
    schema_targets.extend(examples.iter().cloned());
    scanners::kubernetes_validate(sh, &schema_targets)?;

    util::step("checkov (kubernetes framework)");
    for rendering in &renderings {
        let mut files = vec![rendering.file.clone()];
        if rendering.name == "base" {
            files.extend(examples.iter().cloned());
        }
        let max_skips = rendering.expected().max_scanner_skips;
        scanners::checkov(sh, &rendering.name, &files, max_skips)?;
    }

    util::step("manifest invariants");
    let mut example_objects = Vec::new();
    for example in &examples {
        let text = fs::read_to_string(example)
            .with_context(|| format!("reading {}", example.display()))?;
        example_objects.extend(model::parse_documents(
            &text,
            &example.display().to_string(),
        )?);
    }
    let mut failures = Vec::new();
    let mut overlays = Vec::new();
    for rendering in &renderings {
        let text = fs::read_to_string(&rendering.file)
            .with_context(|| format!("reading {}", rendering.file.display()))?;
        let mut objects = model::parse_documents(&text, &rendering.name)?;
        if let Some(env) = &rendering.overlay_env {
            overlays.push((env.clone(), objects.clone()));
        }
        // The examples stand in for the real Secrets, which each environment has in its namespace.
        if rendering.kind != Kind::LogAgent {
            objects.extend(example_objects.iter().cloned().map(|mut example| {
                example["metadata"]["namespace"] = Value::from(rendering.namespace.as_str());
                example
            }));
        }
        let violations = invariants::check(&objects, &rendering.expected());
        eprintln!(
            "{}: {} objects, {} violations",
            rendering.name,
            objects.len(),
            violations.len()
        );
        failures.extend(
            violations
                .into_iter()
                .map(|v| format!("{}: {v}", rendering.name)),
        );
    }
    let overlays: Vec<(&str, &[Value])> = overlays
        .iter()
        .map(|(env, objects)| (env.as_str(), objects.as_slice()))
        .collect();
    let across = namespaces::check_environments(&overlays);
    eprintln!(
        "overlays {}: one namespace each, {} violations",
        overlays
            .iter()
            .map(|(env, _)| *env)
            .collect::<Vec<_>>()
            .join(", "),
        across.len()
    );
    failures.extend(across);
    anyhow::ensure!(
        failures.is_empty(),
        "the manifests break {} invariant(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    eprintln!("manifests: all checks passed");
    Ok(())
}

/// Renders the base, each overlay (sorted by name) alone and with the observability component, and
/// the log agent into `RENDER_DIR`.
fn render_all(sh: &Shell, root: &Path, kubernetes: &Path) -> anyhow::Result<Vec<Rendering>> {
    let out_dir = root.join(RENDER_DIR);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut overlays: Vec<PathBuf> = fs::read_dir(kubernetes.join("overlays"))
        .with_context(|| format!("listing {KUBERNETES_DIR}/overlays"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    overlays.retain(|dir| dir.join("kustomization.yaml").is_file());
    overlays.sort();
    anyhow::ensure!(
        !overlays.is_empty(),
        "no overlay with a kustomization.yaml in {KUBERNETES_DIR}/overlays"
    );

    let mut renderings = vec![render(
        sh,
        root,
        &kubernetes.join("base"),
        Rendering {
            name: "base".to_string(),
            file: out_dir.join("base.yaml"),
            overlay_env: None,
            namespace: namespaces::of_base(),
            kind: Kind::Environment,
        },
    )?];
    for dir in &overlays {
        let env = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        renderings.push(render(
            sh,
            root,
            dir,
            Rendering {
                name: format!("overlays/{env}"),
                file: out_dir.join(format!("overlays-{env}.yaml")),
                overlay_env: Some(env.clone()),
                namespace: namespaces::of_environment(&env),
                kind: Kind::Environment,
            },
        )?);
    }
    for dir in &overlays {
        renderings.push(render_observed(sh, root, &out_dir, dir)?);
    }
    renderings.push(render(
        sh,
        root,
        &kubernetes.join(LOG_AGENT_DIR),
        Rendering {
            name: LOG_AGENT_DIR.to_string(),
            file: out_dir.join(format!("{LOG_AGENT_DIR}.yaml")),
            overlay_env: None,
            namespace: pod_security::LOG_AGENT_NAMESPACE.to_string(),
            kind: Kind::LogAgent,
        },
    )?);
    renderings.push(render_deployer(sh, root, &out_dir)?);
    Ok(renderings)
}

/// An overlay with the observability component added, the way a user adds it: a kustomization
/// (written under `RENDER_DIR`) with the overlay as its resource, the component under `components:`
/// and the overlay's namespace, which the component's objects take like the overlay's own.
fn render_observed(
    sh: &Shell,
    root: &Path,
    out_dir: &Path,
    overlay: &Path,
) -> anyhow::Result<Rendering> {
    let env = overlay
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let namespace = namespaces::of_environment(&env);
    let dir = out_dir.join(format!("observability-{env}"));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // kustomize accepts only paths relative to the kustomization; RENDER_DIR/<dir> is three levels
    // below the root.
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         namespace: {namespace}\n\
         resources:\n  - ../../../{KUBERNETES_DIR}/overlays/{env}\n\
         components:\n  - ../../../{KUBERNETES_DIR}/{OBSERVABILITY_COMPONENT}\n"
    );
    fs::write(dir.join("kustomization.yaml"), kustomization)
        .with_context(|| format!("writing {}", dir.display()))?;
    render(
        sh,
        root,
        &dir,
        Rendering {
            name: format!("overlays/{env}+{OBSERVABILITY_COMPONENT}"),
            file: out_dir.join(format!("overlays-{env}-observability.yaml")),
            overlay_env: None,
            namespace,
            kind: Kind::ObservedEnvironment,
        },
    )
}

/// Renders the kustomization in `dir` into `rendering.file`: kustomize must succeed, warn about
/// nothing and print something.
fn render(sh: &Shell, root: &Path, dir: &Path, rendering: Rendering) -> anyhow::Result<Rendering> {
    let name = &rendering.name;
    let output = cmd!(sh, "kubectl kustomize {dir}")
        .quiet()
        .ignore_status()
        .output()
        .context("running kubectl kustomize")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "`kubectl kustomize` of {name} ({}) failed:\n{stderr}",
        dir.display()
    );
    // kustomize reports deprecated fields on stderr; the manifests must use current syntax.
    anyhow::ensure!(
        stderr.trim().is_empty(),
        "`kubectl kustomize` of {name} ({}) warned:\n{stderr}",
        dir.display()
    );
    let yaml = String::from_utf8(output.stdout).context("kustomize printed non-UTF-8")?;
    anyhow::ensure!(!yaml.trim().is_empty(), "{name} renders to nothing");
    let file = &rendering.file;
    fs::write(file, &yaml).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "{name}: rendered to {}",
        file.strip_prefix(root).unwrap_or(file).display()
    );
    Ok(rendering)
}

/// What `deployer deploy --target kubernetes --env prod` would apply, as `deployer render` prints it.
fn render_deployer(sh: &Shell, root: &Path, out_dir: &Path) -> anyhow::Result<Rendering> {
    let name = "deployer render prod".to_string();
    let (repository, version) = (DEPLOYER_RENDER_REPOSITORY, DEPLOYER_RENDER_VERSION);
    let yaml = cmd!(
        sh,
        "cargo run --quiet -p deployer -- --repository {repository} render --target kubernetes --env prod --version {version}"
    )
    .quiet()
    .read()
    .context("`deployer render --target kubernetes --env prod` failed")?;
    let image = format!("image: {repository}:{version}");
    anyhow::ensure!(
        yaml.contains(&image),
        "`deployer render` did not set the release's image ({image} is missing)"
    );
    let file = out_dir.join("deployer-render-prod.yaml");
    // `read` trims the last line break, which YAML files end with.
    fs::write(&file, format!("{yaml}\n")).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "{name}: rendered to {}",
        file.strip_prefix(root).unwrap_or(&file).display()
    );
    Ok(Rendering {
        name,
        file,
        overlay_env: None,
        namespace: namespaces::of_environment("prod"),
        kind: Kind::Environment,
    })
}

/// Every `secret.example.yaml` under the base, sorted.
fn secret_examples(base: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(base).with_context(|| format!("listing {}", base.display()))? {
        let candidate = entry?.path().join(SECRET_EXAMPLE);
        if candidate.is_file() {
            found.push(candidate);
        }
    }
    found.sort();
    anyhow::ensure!(
        !found.is_empty(),
        "no {SECRET_EXAMPLE} under {}",
        base.display()
    );
    Ok(found)
}
