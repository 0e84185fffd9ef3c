//! `/api/tasks`: create, list (keyset pagination), read, update, delete.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problems::{BodyProblems, NoSuchTask, ServerProblems};
use super::{AppState, JsonObject};
use crate::error::{ApiError, Problem};
use crate::task::{CreateTaskRequest, NewTask, Task, TaskPatch, UpdateTaskRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

const DEFAULT_LIMIT: u16 = 20;
const MAX_LIMIT: u16 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    limit: Option<u16>,
    /// Cursor: the `next` value of the previous page.
    #[param(
        format = "uint64",
        minimum = 0,
        maximum = 18446744073709551615u64,
        nullable = false
    )]
    after: Option<u64>,
    /// Only tasks with this completion state.
    #[param(nullable = false)]
    done: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    items: Vec<Task>,
    /// Pass as `after` to get the next page; null on the last page.
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615u64)]
    next: Option<u64>,
}

/// The `{id}` of a task's path, any unsigned 64-bit integer. It is taken from the request head, so
/// a malformed id is answered with 400 before the body is read (and before its content type is
/// judged).
#[derive(Clone, Copy, Debug, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct TaskId(
    /// Task id.
    #[param(format = "uint64", minimum = 0, maximum = 18446744073709551615u64)]
    u64,
);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<u64>::from_request_parts(parts, state).await?;
        Ok(Self(id))
    }
}

#[utoipa::path(get, path = "/api/tasks", tag = "tasks", operation_id = "listTasks", params(ListParams),
    responses(
        (status = 200, description = "A page of tasks, ordered by id", body = TaskPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let Query(params) = query?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "invalid query string: limit must be from 1 to {MAX_LIMIT}"
        )));
    }
    let page = state
        .store
        .list(limit, params.after.unwrap_or(0), params.done)
        .await
        .map_err(|e| ApiError::store(e, None))?;
    Ok(Json(TaskPage {
        items: page.items,
        next: page.next,
    }))
}

#[utoipa::path(post, path = "/api/tasks", tag = "tasks", operation_id = "createTask",
    request_body = CreateTaskRequest,
    responses(
        (status = 201, description = "Created; `Location` names the new task", body = Task,
            headers(("Location" = String, description = "Path of the new task"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ServerProblems,
    ))]
pub async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewTask::from_json(&body).map_err(ApiError::Validation)?;
    let task = state
        .store
        .create(&new)
        .await
        .map_err(|e| ApiError::store(e, None))?;
    let location = format!("/api/tasks/{}", task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(task),
    ))
}

#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", operation_id = "getTask", params(TaskId),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 400, description = "The id is not an integer from 0 to 2^64-1", body = Problem, content_type = "application/problem+json"),
        NoSuchTask,
        ServerProblems,
    ))]
pub async fn read(
    State(state): State<AppState>,
    TaskId(id): TaskId,
) -> Result<Json<Task>, ApiError> {
    state
        .store
        .get(id)
        .await
        .map(Json)
        .map_err(|e| ApiError::store(e, Some(id)))
}

#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", operation_id = "updateTask", params(TaskId),
    request_body = UpdateTaskRequest,
    responses(
        (status = 200, description = "The updated task", body = Task),
        (status = 400, description = "The id is not an integer from 0 to 2^64-1, or malformed JSON", body = Problem, content_type = "application/problem+json"),
        NoSuchTask,
        BodyProblems,
        ServerProblems,
    ))]
pub async fn update(
    State(state): State<AppState>,
    TaskId(id): TaskId,
    JsonObject(body): JsonObject,
) -> Result<Json<Task>, ApiError> {
    let patch = TaskPatch::from_json(&body).map_err(ApiError::Validation)?;
    state
        .store
        .update(id, &patch)
        .await
        .map(Json)
        .map_err(|e| ApiError::store(e, Some(id)))
}

#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks", operation_id = "deleteTask", params(TaskId),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not an integer from 0 to 2^64-1", body = Problem, content_type = "application/problem+json"),
        NoSuchTask,
        ServerProblems,
    ))]
pub async fn remove(
    State(state): State<AppState>,
    TaskId(id): TaskId,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete(id)
        .await
        .map_err(|e| ApiError::store(e, Some(id)))?;
    Ok(StatusCode::NO_CONTENT)
}
