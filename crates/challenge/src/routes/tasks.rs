//! `/api/tasks`: create, list (keyset pagination), read, update, delete.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AppState, JsonObject};
use crate::error::{ApiError, Problem};
use crate::task::{CreateTaskRequest, NewTask, Task, TaskPatch, UpdateTaskRequest};

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/tasks", get(list).post(create))
        .route("/api/tasks/{id}", get(read).patch(update).delete(remove))
}

const DEFAULT_LIMIT: u16 = 20;
const MAX_LIMIT: u16 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    limit: Option<u16>,
    /// Cursor: the `next` value of the previous page.
    after: Option<u64>,
    /// Only tasks with this completion state.
    done: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    items: Vec<Task>,
    /// Pass as `after` to get the next page; null on the last page.
    next: Option<u64>,
}

#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(ListParams),
    responses(
        (status = 200, description = "A page of tasks, ordered by id", body = TaskPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
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

#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTaskRequest,
    responses(
        (status = 201, description = "Created; `Location` names the new task", body = Task),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
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

#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = u64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 400, description = "Id is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn read(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<Task>, ApiError> {
    let Path(id) = path?;
    state
        .store
        .get(id)
        .await
        .map(Json)
        .map_err(|e| ApiError::store(e, Some(id)))
}

#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", request_body = UpdateTaskRequest,
    params(("id" = u64, Path, description = "Task id")),
    responses(
        (status = 200, description = "The updated task", body = Task),
        (status = 400, description = "Malformed JSON or id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
    JsonObject(body): JsonObject,
) -> Result<Json<Task>, ApiError> {
    let Path(id) = path?;
    let patch = TaskPatch::from_json(&body).map_err(ApiError::Validation)?;
    state
        .store
        .update(id, &patch)
        .await
        .map(Json)
        .map_err(|e| ApiError::store(e, Some(id)))
}

#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = u64, Path, description = "Task id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Id is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = path?;
    state
        .store
        .delete(id)
        .await
        .map_err(|e| ApiError::store(e, Some(id)))?;
    Ok(StatusCode::NO_CONTENT)
}
