//! `/debug/failpoints` (only in `failpoints` builds): arm, disarm and list the crash points of
//! [`crate::failpoints`] at run time, on the server's port and on a worker's metrics port.
//!
//! - `GET /debug/failpoints` → `{"armed": {"<name>": "<actions>", …}, "names": [every name]}`
//! - `PUT /debug/failpoints/{name}` with the fail-rs actions as the body (`return`,
//!   `2*off->return`, …) → 200 `{"failpoint": name, "actions": actions}`
//! - `DELETE /debug/failpoints/{name}` → 200 `{"failpoint": name, "actions": null}`
//!
//! An unknown name or an unparseable action is a 400 that names the valid failpoints.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::ApiError;
use crate::failpoints;

/// The failpoint routes, mergeable into any router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/debug/failpoints", get(list)).route(
        "/debug/failpoints/{name}",
        get(show).put(arm).delete(disarm),
    )
}

async fn list() -> Response {
    let armed: serde_json::Map<String, serde_json::Value> = failpoints::list()
        .into_iter()
        .map(|(n, a)| (n, serde_json::Value::String(a)))
        .collect();
    Json(json!({ "armed": armed, "names": failpoints::NAMES })).into_response()
}

async fn show(Path(name): Path<String>) -> Result<Response, ApiError> {
    failpoints::check_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let actions = failpoints::list()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| a);
    Ok(Json(json!({ "failpoint": name, "actions": actions })).into_response())
}

async fn arm(Path(name): Path<String>, body: String) -> Result<Response, ApiError> {
    let actions = body.trim();
    if actions.is_empty() {
        return Err(ApiError::bad_request(
            "the body must be the fail-rs actions, e.g. `return` or `2*off->return`",
        ));
    }
    failpoints::configure(&name, actions).map_err(|e| ApiError::bad_request(e.to_string()))?;
    tracing::warn!(failpoint = %name, %actions, "failpoint armed over HTTP");
    Ok(Json(json!({ "failpoint": name, "actions": actions })).into_response())
}

async fn disarm(Path(name): Path<String>) -> Result<Response, ApiError> {
    failpoints::remove(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    tracing::info!(failpoint = %name, "failpoint disarmed over HTTP");
    Ok(Json(json!({ "failpoint": name, "actions": null })).into_response())
}
