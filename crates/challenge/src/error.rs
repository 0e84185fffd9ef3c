//! The HTTP error type: every failure becomes an RFC 9457 `application/problem+json` response here,
//! and nowhere else.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::outage::Outage;
use crate::store::StoreError;
use crate::task::FieldErrors;

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem (`urn:infra-challenge:problem:<kind>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For 422: messages per offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<FieldErrors>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MalformedJson(String),
    #[error("no task with id {0}")]
    TaskNotFound(u64),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("request bodies are not decoded: send them without `Content-Encoding` (identity)")]
    UnsupportedContentEncoding,
    #[error("the request body has invalid fields")]
    Validation(FieldErrors),
    #[error("the database is unavailable, retry later")]
    Unavailable { outage: Outage, detail: String },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed-json"),
            Self::TaskNotFound(_) | Self::RouteNotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            Self::UnsupportedMediaType | Self::UnsupportedContentEncoding => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            Self::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn store(err: StoreError, id: Option<u64>) -> Self {
        match err {
            StoreError::NotFound => Self::TaskNotFound(id.unwrap_or_default()),
            StoreError::Unavailable { outage, detail } => Self::Unavailable { outage, detail },
            StoreError::Query(e) => Self::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug) = self.parts();
        let coding_refused = matches!(self, Self::UnsupportedContentEncoding);
        // The cause of 5xx is logged, not shown: it may name hosts, users or SQL. An outage under
        // load would log once per request: its warnings are limited per cause and interval.
        match &self {
            Self::Unavailable { outage, detail } => crate::outage::warn(*outage, detail),
            Self::Internal(why) => tracing::error!(cause = %why, "internal error"),
            _ => {}
        }
        let problem = Problem {
            kind: format!("urn:infra-challenge:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                Self::Validation(errors) => Some(errors),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        // RFC 9110 §15.5.16: a 415 caused by a content coding says which codings are accepted.
        if coding_refused {
            response.headers_mut().insert(
                header::ACCEPT_ENCODING,
                header::HeaderValue::from_static("identity"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(format!("invalid path parameter: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(format!("invalid query string: {}", rejection.body_text()))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge {
                limit: crate::routes::BODY_LIMIT,
            }
        } else {
            Self::BadRequest(rejection.body_text())
        }
    }
}
