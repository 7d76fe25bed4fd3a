//! `POST /webhooks`: verify the signature over the raw bytes, check the headers, parse, then enqueue
//! atomically (or spool). A 2xx is only returned once the delivery is durable.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiError, AppState};
use crate::config::OnRedisDown;
use crate::delivery::{now_ms, valid_delivery_id, Delivery};
use crate::github::{event, signature};
use crate::ingress_spool::SpoolOutcome;
use crate::queue::{is_connection_error, Enqueued};
use crate::sabotage::{self, Variant};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub async fn receive(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match accept(&st, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn accept(st: &AppState, headers: &HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    if !st.allow_unsigned
        && !signature::verify(&st.secrets, &body, header(headers, "x-hub-signature-256"))
    {
        st.metrics.events_rejected.inc("signature");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid signature"));
    }
    let bad = |reason: &str, msg: String| {
        st.metrics.events_rejected.inc(reason);
        ApiError::bad_request(msg)
    };
    let event_name = header(headers, "x-github-event")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| bad("bad_request", "missing X-GitHub-Event header".into()))?;
    let delivery_id = header(headers, "x-github-delivery")
        .ok_or_else(|| bad("bad_request", "missing X-GitHub-Delivery header".into()))?;
    if !valid_delivery_id(delivery_id) {
        return Err(bad(
            "bad_request",
            "X-GitHub-Delivery must be 1-200 printable characters without spaces or '/'".into(),
        ));
    }
    let payload = event::payload_bytes(header(headers, "content-type"), &body)
        .map_err(|e| bad("bad_request", e.to_string()))?;
    let meta = event::parse_meta(&payload).map_err(|e| bad("bad_request", e.to_string()))?;
    let d = Delivery {
        id: delivery_id.to_owned(),
        event: event_name.to_owned(),
        action: meta.action,
        repository: meta.repository,
        received_at_ms: now_ms(),
        body: payload,
    };

    // Order is kept: while the spool holds anything, new deliveries go behind it.
    if let Some(spool) = &st.spool {
        if let Some(outcome) = spool.accept_if_spooling(&d, &st.metrics).await {
            return spooled_response(&d, outcome);
        }
    }
    match st.queue.enqueue(&d).await {
        Ok(Enqueued::Queued(_)) => {
            crate::failpoint!(crate::failpoints::AFTER_ENQUEUE);
            st.metrics.events_received.inc(&d.event);
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "queued", "delivery": d.id})),
            )
                .into_response())
        }
        Ok(Enqueued::Duplicate(state)) => {
            st.metrics.events_duplicate.inc(&d.event);
            Ok((
                StatusCode::OK,
                Json(json!({"status": "duplicate", "delivery": d.id, "state": state})),
            )
                .into_response())
        }
        Err(e) if sabotage::is(Variant::AcceptOnEnqueueFailure) => {
            // Sabotage: the failure is swallowed and the sender told it is queued.
            tracing::warn!(delivery = %d.id, error = %e, "enqueue failed");
            st.metrics.events_received.inc(&d.event);
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "queued", "delivery": d.id})),
            )
                .into_response())
        }
        Err(e) if is_connection_error(&e) => {
            if st.on_redis_down == OnRedisDown::Spool {
                if let Some(spool) = &st.spool {
                    return spooled_response(&d, spool.spool(&d, &st.metrics).await);
                }
            }
            st.metrics.events_rejected.inc("queue_unavailable");
            tracing::warn!(delivery = %d.id, error = %e, "redis unreachable: answering 503");
            Err(ApiError::unavailable(
                "queue unavailable",
                st.retry_after_secs,
            ))
        }
        Err(e) => {
            st.metrics.events_rejected.inc("queue_error");
            tracing::error!(delivery = %d.id, error = %e, "enqueue failed");
            Err(ApiError::unavailable(
                "queue unavailable",
                st.retry_after_secs,
            ))
        }
    }
}

/// The answer for what the spool did with `d`: 202 `spooled`, 200 `duplicate`, or 503 (not
/// durable; GitHub retries).
fn spooled_response(d: &Delivery, outcome: SpoolOutcome) -> Result<Response, ApiError> {
    match outcome {
        SpoolOutcome::Spooled => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "spooled", "delivery": d.id})),
        )
            .into_response()),
        SpoolOutcome::Duplicate { state } => Ok((
            StatusCode::OK,
            Json(json!({"status": "duplicate", "delivery": d.id, "state": state})),
        )
            .into_response()),
        SpoolOutcome::Failed { .. } => Err(ApiError::unavailable(
            "queue unavailable and spool failed",
            5,
        )),
    }
}
