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

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use crate::state::AppState;

/// Largest request body accepted.
const BODY_BYTES_MAX: usize = 256 * 1024;

/// Every route, under the service prefix.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .merge(api::router())
        .route("/api/v1/me/events", get(stream::my_events))
        .merge(internal::router())
        .merge(ops::router())
        .merge(page::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX));
    let prefix = state.config.prefix_path().to_string();
    let routes = routes.with_state(state);
    if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(&prefix, routes)
    }
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound("no such endpoint".into())
}
