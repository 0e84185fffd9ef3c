//! `/metrics`, `/version` and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::build_info::BUILD;
use crate::error::Problem;
use crate::telemetry;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(version))
        .routes(routes!(openapi))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    telemetry::before_scrape(state.store.pool_status());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

#[derive(Serialize, ToSchema)]
pub struct VersionInfo {
    version: &'static str,
    git_sha: &'static str,
    build_date: &'static str,
}

#[utoipa::path(get, path = "/version", tag = "operations",
    responses((status = 200, description = "What is running", body = VersionInfo)))]
pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: BUILD.version,
        git_sha: BUILD.git_sha,
        build_date: BUILD.build_date,
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
