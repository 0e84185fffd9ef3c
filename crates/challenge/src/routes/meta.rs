//! `/metrics`, `/version` and `/openapi.json`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::build_info::BUILD;
use crate::db;
use crate::error::Problem;
use crate::exemplars;
use crate::store::StoreError;
use crate::telemetry;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(version))
        .routes(routes!(openapi))
}

/// The service's metrics.
///
/// OpenMetrics 1.0, with trace exemplars on the latency histogram's buckets, when the `Accept`
/// header asks for it (as Prometheus does); else the Prometheus text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4, or OpenMetrics 1.0 \
        with trace exemplars when `Accept` names application/openmetrics-text", content(
            (String = "text/plain; version=0.0.4"),
            (String = "application/openmetrics-text; version=1.0.0")))))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    telemetry::before_scrape(state.store.pool_status());
    let rendered = state.metrics.render();
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(exemplars::wants_openmetrics);
    match openmetrics {
        true => (
            [(header::CONTENT_TYPE, exemplars::OPENMETRICS_CONTENT_TYPE)],
            exemplars::openmetrics(&rendered),
        ),
        false => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            rendered,
        ),
    }
}

/// What is running: the build, and the schema versions that tell whether this build can run
/// against the database it is connected to.
#[derive(Serialize, ToSchema)]
pub struct VersionInfo {
    /// Release version of this build.
    version: &'static str,
    /// Git commit this build was made from, `unknown` outside an image build.
    git_sha: &'static str,
    /// When this build was made, `unknown` outside an image build.
    build_date: &'static str,
    /// Newest migration embedded in this build (its version, the prefix of its file name; 0 with
    /// none). A build whose `schema_version` is below the database's `database_schema_version`
    /// runs code that was never run against that schema (it skips the migrations it does not
    /// know): the deployer refuses to roll back to it unless forced.
    schema_version: i64,
    /// Newest migration successfully applied in the connected database; null when the database
    /// cannot be asked now (unreachable, refusing us, no answer within a second) or has no
    /// migration applied yet.
    #[schema(required = true)]
    database_schema_version: Option<i64>,
}

/// How long `/version` waits for the database's schema version before answering without it.
const VERSION_DB_TIMEOUT: Duration = Duration::from_secs(1);

/// The build and the schema versions.
///
/// Always 200, and quickly, whatever the state of the database: it is asked for its schema version
/// for at most a second, and `database_schema_version` is null when it cannot answer.
#[utoipa::path(get, path = "/version", tag = "operations",
    responses((status = 200, description = "What is running, and the schema versions of this build and of its database", body = VersionInfo)))]
pub async fn version(State(state): State<AppState>) -> Json<VersionInfo> {
    let database_schema_version = match state.store.schema_version(VERSION_DB_TIMEOUT).await {
        Ok(version) => version,
        Err(StoreError::Unavailable { outage, detail }) => {
            crate::outage::warn(outage, &detail);
            None
        }
        Err(err) => {
            tracing::warn!(error = %err, "/version: reading the database schema version failed");
            None
        }
    };
    Json(VersionInfo {
        version: BUILD.version,
        git_sha: BUILD.git_sha,
        build_date: BUILD.build_date,
        schema_version: db::expected_schema_version(),
        database_schema_version,
    })
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object,
        content_type = "application/json")))]
pub async fn openapi() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(super::openapi())
}

/// What the document says besides its paths, which the routers add as they register handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "challenge", description = "Tasks API of infra-challenge"),
    components(schemas(Problem)),
    tags((name = "tasks", description = "Task resource"), (name = "operations", description = "Probes, metrics, metadata"))
)]
pub struct ApiDoc;
