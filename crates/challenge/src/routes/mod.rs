//! HTTP routes: one module per resource, merged here. Handlers are registered together with their
//! OpenAPI operation (`utoipa_axum::routes!`), so the document lists exactly the routes served.

mod health;
mod meta;
mod problems;
mod tasks;

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderMap, Uri, header};
use axum::middleware;
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::health::Health;
use crate::store::TaskStore;
use crate::telemetry;

/// Largest accepted request body: above 64 KiB a request is answered with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: TaskStore,
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    let (routes, _document) = documented().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(telemetry::observe))
        .with_state(state)
}

/// The OpenAPI document served at `/openapi.json`, built once from the same routers that serve.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> =
        LazyLock::new(|| documented().into_openapi());
    &DOCUMENT
}

/// Every route, each with its operation in the document.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(meta::ApiDoc::openapi())
        .merge(tasks::router())
        .merge(health::router())
        .merge(meta::router())
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
        if !is_json_utf8(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        if !is_identity_encoded(req.headers()) {
            return Err(ApiError::UnsupportedContentEncoding);
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

/// `Content-Type: application/json`, with no charset or `charset=utf-8` (JSON exchanged between
/// systems is UTF-8, RFC 8259 §8.1). Names and values are case-insensitive, a quoted value is
/// unquoted, other parameters are ignored. Other `+json` types are refused: their semantics (a merge
/// patch, a problem) are not what the handlers implement.
fn is_json_utf8(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|parameter| match parameter.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                value.eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

/// No `Content-Encoding`, or only `identity`: bodies are not decompressed here.
fn is_identity_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|codings| {
                codings
                    .split(',')
                    .all(|coding| coding.trim().eq_ignore_ascii_case("identity"))
            })
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: header::HeaderName, values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn json_is_accepted_without_charset_or_with_utf8() {
        for value in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            "application/json; version=2",
        ] {
            assert!(
                is_json_utf8(&headers(header::CONTENT_TYPE, &[value])),
                "{value}"
            );
        }
    }

    #[test]
    fn other_charsets_and_json_suffix_types_are_refused() {
        for value in [
            "application/json; charset=latin1",
            "application/json; charset=utf-16",
            "application/json; charset=utf-8; charset=latin1",
            "application/merge-patch+json",
            "application/problem+json",
            "text/json",
            "text/plain",
            "",
        ] {
            assert!(
                !is_json_utf8(&headers(header::CONTENT_TYPE, &[value])),
                "{value}"
            );
        }
        assert!(!is_json_utf8(&HeaderMap::new()));
    }

    #[test]
    fn only_the_identity_coding_is_accepted() {
        assert!(is_identity_encoded(&HeaderMap::new()));
        assert!(is_identity_encoded(&headers(
            header::CONTENT_ENCODING,
            &["identity", "Identity"]
        )));
        for value in ["gzip", "identity, gzip", "br", ""] {
            assert!(
                !is_identity_encoded(&headers(header::CONTENT_ENCODING, &[value])),
                "{value}"
            );
        }
    }
}
