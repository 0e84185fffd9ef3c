//! HTTP routes: one module per resource, merged here.

mod health;
mod meta;
mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{Uri, header};
use axum::middleware;
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::health::Health;
use crate::store::TaskStore;
use crate::telemetry;

pub use meta::ApiDoc;

/// Largest accepted request body (DESIGN: 413 above 64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: TaskStore,
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(tasks::router())
        .merge(health::router())
        .merge(meta::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(telemetry::observe))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A JSON object body. Unlike `axum::Json`, every rejection is a problem+json response, and typing
/// and validation of fields is left to the domain parsers so that all field errors are reported at once.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(ApiError::Validation(
                [("body".to_owned(), vec!["must be a JSON object".to_owned()])].into(),
            )),
            Err(err) => Err(ApiError::MalformedJson(format!(
                "malformed JSON body: {err}"
            ))),
        }
    }
}
