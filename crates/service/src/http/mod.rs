//! The HTTP surface. [`app`] builds the router (tests drive it directly),
//! [`serve`] binds it.

pub mod api;
pub mod caller;
pub mod error;
pub mod input;
pub mod internal;
pub mod ops;
pub mod page;
pub mod stream;
pub mod views;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

/// Largest request body accepted.
const BODY_BYTES_MAX: usize = 256 * 1024;

/// Every route, under the service prefix.
pub fn app(state: AppState) -> Router {
    let machine = Router::new()
        .merge(api::router())
        .route("/api/v1/me/events", get(stream::my_events))
        .merge(internal::router())
        .merge(ops::router())
        .layer(middleware::from_fn(refuse_control_names))
        .layer(middleware::map_response(json_errors));
    let routes = machine
        .merge(page::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX));
    // Nested at the prefix with its slash, so that the page is served at
    // `/services/credits/` (where the hub links); the bare prefix redirects there.
    let prefix = state.config.service_prefix.clone();
    let routes = routes.with_state(state);
    if prefix == "/" {
        routes
    } else {
        let to = prefix.clone();
        Router::new().nest(&prefix, routes).route(
            prefix.trim_end_matches('/'),
            get(|| async move { Redirect::permanent(&to) }),
        )
    }
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound("no such endpoint".into())
}

/// The errors axum makes itself (a body too large, a path that is not UTF-8,
/// a method an endpoint lacks) in the API's shape, `{"status", "message"}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is too large; at most {BODY_BYTES_MAX} bytes are accepted")
        }
        // axum adds the Allow header afterwards.
        StatusCode::METHOD_NOT_ALLOWED => {
            "this endpoint does not accept this method; the Allow header lists those it does"
                .to_string()
        }
        _ => match String::from_utf8_lossy(&text).trim() {
            "" => status.canonical_reason().unwrap_or("error").to_string(),
            text => text.to_string(),
        },
    };
    let body = serde_json::json!({"status": status.as_u16(), "message": message});
    (status, Json(body)).into_response()
}

/// A name with control characters can't exist (the ledger refuses them), and
/// PostgreSQL can't even look up one with a NUL: 400 before any lookup.
async fn refuse_control_names(request: Request, next: Next) -> Response {
    let path = request.uri().path().as_bytes();
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            path[i],
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    if String::from_utf8_lossy(&decoded)
        .chars()
        .any(char::is_control)
    {
        return error::ApiError::BadRequest(
            "a name in the path contains control characters; no user, pool, project or server has such a name".into(),
        )
        .into_response();
    }
    next.run(request).await
}
