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
/// uid/gid of the runtime image's `nonroot` user: the app reads its password file as that user.
pub const APP_UID: u32 = 65532;

/// The app service of compose.yaml.
pub const COMPOSE_APP_SERVICE: &str = "app";
/// The Compose file, relative to the repository checkout.
pub const COMPOSE_FILE: &str = "deploy/compose/compose.yaml";
