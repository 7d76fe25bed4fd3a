//! Read APIs: readiness, boards, per-delivery facts and the processed-delivery listing.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState};
use crate::store::{DeliveryRows, Store};

/// Most ids one lookup may ask for.
pub const MAX_LOOKUP: usize = 10_000;
/// Default and maximum page sizes of the listing.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

pub async fn readyz(State(st): State<AppState>) -> Response {
    let redis = st.queue.ping().await;
    let store = blocking(&st.store, |s| s.ping()).await;
    let body = json!({
        "redis": redis.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        "store": store.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.message.clone()),
    });
    let status = if redis.is_ok() && store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn board(
    State(st): State<AppState>,
    Path((owner, repo)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let full = format!("{owner}/{repo}");
    let name = full.clone();
    match blocking(&st.store, move |s| s.board(&name)).await? {
        Some(b) => Ok(([(header::CONTENT_TYPE, "application/json")], b.json).into_response()),
        None => Err(ApiError::not_found(format!(
            "no board for repository `{full}`: no issue or pull request of it was processed yet"
        ))),
    }
}

/// One delivery as the harness sees it.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub delivery: String,
    /// received|processing|processed|failed|spooled|unknown
    pub state: String,
    pub attempts: u64,
    pub logged: u64,
    pub effects: u64,
    pub applied_at: Option<i64>,
    /// Consumer name of the worker whose transaction applied it.
    pub applied_by: Option<String>,
}

async fn views(st: &AppState, ids: Vec<String>) -> Result<Vec<DeliveryView>, ApiError> {
    let ids2 = ids.clone();
    let rows: Vec<DeliveryRows> = blocking(&st.store, move |s| s.lookup(&ids2)).await?;
    // Redis may be down: then the Redis-side state is unknown, the store counts are still exact.
    let states = st.queue.states(&ids).await.ok();
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let (redis_state, attempts) = states
                .as_ref()
                .and_then(|s| s.get(i).cloned())
                .unwrap_or((None, 0));
            let state = match redis_state {
                Some(s) => s,
                None if st.spool.as_ref().is_some_and(|sp| sp.contains(&r.delivery)) => {
                    "spooled".into()
                }
                // The state key expired (TTL) but the store has it.
                None if r.applied_at.is_some() => "processed".into(),
                None => "unknown".into(),
            };
            DeliveryView {
                delivery: r.delivery,
                state,
                attempts,
                logged: r.logged,
                effects: r.effects,
                applied_at: r.applied_at,
                applied_by: r.applied_by,
            }
        })
        .collect())
}

pub async fn delivery(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let mut v = views(&st, vec![id]).await?;
    v.pop()
        .map(Json)
        .ok_or_else(|| ApiError::internal("lookup returned nothing"))
}

#[derive(Deserialize)]
pub struct LookupBody {
    ids: Vec<String>,
}

pub async fn lookup(
    State(st): State<AppState>,
    body: Result<Json<LookupBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("expected {{\"ids\":[…]}}: {e}")))?;
    if body.ids.len() > MAX_LOOKUP {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_LOOKUP} ids per lookup, got {}",
            body.ids.len()
        )));
    }
    let v = views(&st, body.ids).await?;
    Ok(Json(json!({ "deliveries": v })).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn list_deliveries(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = q.after.clone();
    let rows = blocking(&st.store, move |s| s.list_applied(after.as_deref(), limit)).await?;
    let next = if rows.len() == limit {
        rows.last().map(|r| r.delivery.clone())
    } else {
        None
    };
    // `deliveries`: the ids (as always); `items`: the same ids with when and by whom applied.
    let ids: Vec<&str> = rows.iter().map(|r| r.delivery.as_str()).collect();
    Ok(Json(json!({ "deliveries": ids, "items": rows, "next": next })).into_response())
}
