//! The problem responses several operations share, declared once for the OpenAPI document. They
//! only describe what [`ApiError`](crate::error::ApiError) answers; nothing constructs them.

#![allow(dead_code)]

use utoipa::IntoResponses;

use crate::error::Problem;

/// What every `/api` operation may answer whatever its input: its dependencies failing.
#[derive(IntoResponses)]
pub enum ServerProblems {
    /// Unexpected server error; the cause is logged, not shown.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// The database is unavailable or too slow: retry later.
    #[response(status = 503, content_type = "application/problem+json",
        headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))]
    Unavailable(Problem),
}

/// What an operation on one task answers when no task has that id.
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such task",
    content_type = "application/problem+json"
)]
pub struct NoSuchTask(Problem);

/// What an operation that reads a JSON body may answer about that body (400 for malformed JSON is
/// documented by each operation, since a bad id or query is a 400 too).
#[derive(IntoResponses)]
pub enum BodyProblems {
    /// Body larger than 64 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Not `application/json` (with no charset or `charset=utf-8`), or a `Content-Encoding` other
    /// than `identity`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Invalid fields: `errors` lists the messages per field (`body` when it is not an object).
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
}
