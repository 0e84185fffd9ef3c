//! The Kubernetes target: the overlay `deploy/kubernetes/overlays/<env>` rendered by kustomize,
//! applied with server-side apply (field manager `deployer`), watched through the API until the
//! rollout completes or fails, with release records kept in the cluster.
//!
//! The decisions are pure functions, unit-tested on objects shaped as the API returns them:
//! `rollout` (is the rollout done, still going, or failed and why), `manifests` (what is applied),
//! `applyset` (the KEP-3659 inventory and what to prune), `records` (the release history).

// Wired into the target in the following commits.
#[allow(dead_code)]
pub mod applyset;
#[allow(dead_code)]
pub mod manifests;
#[allow(dead_code)]
pub mod records;
#[allow(dead_code)]
pub mod rollout;
