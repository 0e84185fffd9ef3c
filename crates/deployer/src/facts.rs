//! Facts every part of the deployer agrees on, spelled once: names, ports, images, users.
//! They mirror the repository's deploy files (deploy/compose/compose.yaml,
//! deploy/kubernetes/base) and the Dockerfile; a change there is a change here.

/// The product name: image repository, Compose project prefix, state directory name.
pub const PRODUCT: &str = "infra-challenge";
/// The port the service listens on inside its container (and its Kubernetes Service's port).
pub const SERVICE_PORT: u16 = 8000;
/// The host port used when neither `--port` nor an earlier release of the environment says otherwise.
pub const DEFAULT_HOST_PORT: u16 = 8000;
/// The database image when `--db-image` does not say otherwise.
pub const DEFAULT_DB_IMAGE: &str = "mysql:8.4";
/// The database stand-in `cargo xtask airgap-images` builds where no registry serves `mysql:8.4`.
pub const AIRGAP_DB_IMAGE: &str = "infra-challenge/mariadb:10.11";
/// The reverse proxy in front of the app on Compose (it owns the published port), when
/// `--proxy-image` does not say otherwise, and its stand-in where no registry answers.
pub const DEFAULT_PROXY_IMAGE: &str = "haproxy:2.8";
pub const AIRGAP_PROXY_IMAGE: &str = "infra-challenge/haproxy:2.6";
/// uid/gid of the runtime image's `nonroot` user: the app reads its password file as that user.
pub const APP_UID: u32 = 65532;

/// The app service of compose.yaml.
pub const COMPOSE_APP_SERVICE: &str = "app";
/// The proxy service of compose.yaml, the port it serves the app on inside its container, and
/// the port of its statistics (published on loopback only: the deployer reads which app
/// containers it routes to).
pub const COMPOSE_PROXY_SERVICE: &str = "proxy";
pub const PROXY_PORT: u16 = 8080;
pub const PROXY_STATS_PORT: u16 = 8404;
/// The Compose file, relative to the repository checkout.
pub const COMPOSE_FILE: &str = "deploy/compose/compose.yaml";

/// The Kubernetes overlays, relative to the repository checkout: `<dir>/<env>`.
pub const KUBERNETES_OVERLAYS: &str = "deploy/kubernetes/overlays";
/// The app's Deployment, its containers, and its Service's port name.
pub const K8S_DEPLOYMENT: &str = "challenge";
pub const K8S_APP_CONTAINER: &str = "challenge";
pub const K8S_MIGRATE_CONTAINER: &str = "migrate";
pub const K8S_SERVICE: &str = "challenge";
pub const K8S_SERVICE_PORT_NAME: &str = "http";
/// The database's StatefulSet.
pub const K8S_STATEFULSET: &str = "mysql";
/// The Secret the app mounts (`password`) and the database's Secret (`password`, `root-password`).
pub const K8S_APP_SECRET: &str = "challenge-db";
pub const K8S_DB_SECRET: &str = "mysql";
/// The labels that select the app's and the database's pods.
pub const K8S_APP_SELECTOR: &str =
    "app.kubernetes.io/name=challenge,app.kubernetes.io/instance=infra-challenge";
pub const K8S_DB_SELECTOR: &str =
    "app.kubernetes.io/name=mysql,app.kubernetes.io/instance=infra-challenge";
