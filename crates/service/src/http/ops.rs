//! `health` (no auth) and `metrics` (Prometheus text, `read:metrics` or
//! `admin:users`, as the hub guards its own metrics).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::caller::Caller;
use super::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

async fn health(State(state): State<AppState>) -> Response {
    match state.ledger.pending_stops().await {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok"})),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "degraded", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    if !(caller.0.has_scope("read:metrics") || caller.is_admin()) {
        return Err(ApiError::Forbidden(
            "metrics need the hub scope read:metrics or admin:users".into(),
        ));
    }
    state
        .metrics
        .event_streams
        .set(state.events.open_streams() as i64);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response())
}
