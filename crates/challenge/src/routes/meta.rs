//! `/metrics`, `/version` and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use crate::build_info::BUILD;
use crate::telemetry;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .route("/openapi.json", get(openapi))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    telemetry::record_pool_gauges(state.store.pool_status());
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
    responses((status = 200, description = "This document (OpenAPI 3.1)")))]
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "challenge", description = "Tasks API of infra-challenge"),
    paths(
        super::tasks::list, super::tasks::create, super::tasks::read, super::tasks::update,
        super::tasks::remove, super::health::healthz, super::health::readyz, metrics, version, openapi
    ),
    tags((name = "tasks", description = "Task resource"), (name = "operations", description = "Probes, metrics, metadata"))
)]
pub struct ApiDoc;
