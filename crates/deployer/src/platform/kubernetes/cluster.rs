//! The connection to a cluster: the kubeconfig the way `kubectl` resolves it (`KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account), `--context` to pick one, and a fast,
//! worded failure when the API does not answer.

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{Error, Result};

/// How long connecting to the API may take: a cluster that is down must be reported at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The first question to the API (its version) must be answered within this, or it is unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// A client with what it was made from, for messages.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// The kubeconfig context used (`in-cluster` inside a pod).
    pub context: String,
    /// The API server's URL.
    pub server: String,
}

/// The context and server the kubeconfig names, for messages (never fails: it says "unknown").
pub fn describe_kubeconfig(context: Option<&str>) -> (String, String) {
    let Ok(config) = Kubeconfig::read() else {
        return (context.unwrap_or("none").to_string(), "unknown".to_string());
    };
    let name = context
        .map(str::to_string)
        .or(config.current_context.clone())
        .unwrap_or_else(|| "none".to_string());
    let cluster = config
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let server = config
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| "unknown".to_string());
    (name, server)
}

/// Builds the client for `context` (or the current one) and asks the API its version, all
/// within about five seconds; the error names the context and server tried and the fix.
pub async fn connect(context: Option<&str>) -> Result<(Cluster, String)> {
    let (context_name, server) = describe_kubeconfig(context);
    let config = match context {
        Some(name) => Config::from_kubeconfig(&KubeConfigOptions {
            context: Some(name.to_string()),
            ..KubeConfigOptions::default()
        })
        .await
        .map_err(|e| {
            Error::prerequisite(
                format!("the kubeconfig has no usable context {name:?}: {e}"),
                "list the contexts with `kubectl config get-contexts` and pass one with --context (or \
                 DEPLOYER_KUBE_CONTEXT)",
            )
        })?,
        None => Config::infer().await.map_err(|e| {
            Error::prerequisite(
                format!(
                    "no Kubernetes cluster is configured: no kubeconfig (KUBECONFIG, ~/.kube/config) and not \
                     inside a cluster ({e})"
                ),
                "create or reach a cluster and its kubeconfig (a local one: `kind create cluster`), or set \
                 KUBECONFIG",
            )
        })?,
    };
    let server = if server == "unknown" {
        config.cluster_url.to_string()
    } else {
        server
    };
    let context_name = if context.is_none() && Kubeconfig::read().is_err() {
        "in-cluster".to_string()
    } else {
        context_name
    };
    let mut config = config;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let client = Client::try_from(config).map_err(|e| {
        Error::prerequisite(
            format!("cannot build a client for context {context_name} ({server}): {e}"),
            "check the context's credentials with `kubectl --context CONTEXT get ns`",
        )
    })?;
    let cluster = Cluster {
        client,
        context: context_name,
        server,
    };
    let version = probe(&cluster).await?;
    Ok((cluster, version))
}

/// Asks the API server its version (the cheapest authenticated question).
pub async fn probe(cluster: &Cluster) -> Result<String> {
    match tokio::time::timeout(PROBE_TIMEOUT, cluster.client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(unreachable(cluster, &e.to_string())),
        Err(_) => Err(unreachable(
            cluster,
            &format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
        )),
    }
}

fn unreachable(cluster: &Cluster, why: &str) -> Error {
    Error::prerequisite(
        format!(
            "the Kubernetes API is not reachable: context {} at {} ({why})",
            cluster.context, cluster.server
        ),
        "start the cluster (a local one: `kind create cluster`), pick a reachable context with --context \
         (`kubectl config get-contexts`), or point KUBECONFIG at the right file; `deployer doctor --target \
         kubernetes` checks each prerequisite",
    )
}

/// The managers named in a server-side apply conflict message, e.g. `Apply failed with 1
/// conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
pub fn conflicting_managers(message: &str) -> Vec<String> {
    let mut managers = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find("conflict with \"") {
        rest = &rest[start + "conflict with \"".len()..];
        let Some(end) = rest.find('"') else { break };
        let manager = rest[..end].to_string();
        if !managers.contains(&manager) {
            managers.push(manager);
        }
        rest = &rest[end..];
    }
    managers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_message_names_the_other_field_managers() {
        let message = "Apply failed with 2 conflicts: conflict with \"kubectl-client-side-apply\" using apps/v1: \
                       .spec.replicas\nconflict with \"helm\" using apps/v1: .spec.template.spec.containers[name=\"challenge\"].image\n\
                       conflict with \"helm\" using apps/v1: .metadata.labels.app";
        assert_eq!(
            conflicting_managers(message),
            ["kubectl-client-side-apply", "helm"]
        );
        assert!(conflicting_managers("the object has been modified").is_empty());
    }
}
