//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: it can serve the API).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::db;
use crate::store::StoreError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    status: &'static str,
}

/// Never touches the database: a database outage must not get the process restarted.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Liveness)))]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `starting`, `draining` or `unavailable`.
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize, ToSchema)]
pub struct Checks {
    startup: Check,
    database: Check,
    schema: SchemaCheck,
}

#[derive(Serialize, ToSchema)]
pub struct SchemaCheck {
    status: &'static str,
    /// Newest applied migration, null when none is.
    version: Option<i64>,
    /// Newest migration this build carries.
    expected: i64,
}

fn check(ok: bool, detail: Option<String>) -> Check {
    Check {
        status: if ok { "up" } else { "down" },
        detail,
    }
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve the API", body = Readiness),
        (status = 503, description = "Starting, draining, or the database is not usable", body = Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let expected = db::expected_schema_version();
    let started = state.health.started();
    let draining = state.health.draining();
    // The cause goes to the log; callers see stable words that name no host, user or driver text.
    let (database, version) = match state
        .store
        .schema_version(crate::startup::READINESS_DB_TIMEOUT)
        .await
    {
        Ok(version) => (check(true, None), version),
        Err(StoreError::Unavailable { outage, detail }) => {
            crate::outage::warn(outage, &detail);
            (check(false, Some(outage.describe().to_owned())), None)
        }
        Err(err) => {
            tracing::error!(error = %err, "readiness: reading the schema version failed");
            (
                check(false, Some("the schema version could not be read".into())),
                None,
            )
        }
    };
    let schema_ok = version.is_some_and(|v| v >= expected);
    let status = if draining {
        "draining"
    } else if !started {
        "starting"
    } else if database.status == "up" && schema_ok {
        "ready"
    } else {
        "unavailable"
    };
    crate::telemetry::record_readiness(status == "ready");
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status,
        checks: Checks {
            startup: check(started, None),
            database,
            schema: SchemaCheck {
                status: if schema_ok { "up" } else { "down" },
                version,
                expected,
            },
        },
    };
    (code, Json(body))
}
