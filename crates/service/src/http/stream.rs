//! Server-Sent Events: a user's credits on every change (`api/v1/me/events`)
//! and the round notices the hub plugin's post hook waits for.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use futures::stream::{self, StreamExt};
use tokio::sync::broadcast;

use super::caller::{Caller, Plugin};
use super::error::{ApiError, ApiResult};
use super::views::UserJson;
use crate::state::{AppState, next_change_at};

/// How often an idle stream gets a keepalive comment.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Keeps the open-streams gauge right when a stream ends.
struct StreamGuard(AppState);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.metrics.event_streams.dec();
    }
}

fn messages(
    first: Option<Arc<str>>,
    receiver: broadcast::Receiver<Arc<str>>,
    guard: Option<StreamGuard>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let rest = stream::unfold((receiver, guard), |(mut rx, guard)| async move {
        loop {
            match rx.recv().await {
                Ok(text) => return Some((text, (rx, guard))),
                // A slow tab skips to the newest view.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    stream::iter(first)
        .chain(rest)
        .map(|text| Ok(Event::default().data(&*text)))
}

/// `GET api/v1/me/events`: the caller's credits now, then on every change.
pub async fn my_events(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let name = caller.0.name;
    let view = state.ledger.user_view(&name).await?;
    let Some(receiver) = state.events.subscribe(&name) else {
        return Err(ApiError::Unavailable(
            "too many event streams are open; try again later".into(),
        ));
    };
    state.metrics.event_streams.inc();
    let guard = StreamGuard(state.clone());
    let next = next_change_at(&view);
    let first: Arc<str> =
        Arc::from(serde_json::to_string(&UserJson::from(view)).expect("views serialize"));
    // Remember when this user's view changes by itself.
    state.events.publish(&name, first.clone(), next);
    let mut receiver = receiver;
    // The publish above reached our own receiver too; skip it.
    let _ = receiver.try_recv();
    Ok(Sse::new(messages(Some(first), receiver, Some(guard)))
        .keep_alive(KeepAlive::new().interval(KEEPALIVE)))
}

/// `GET internal/v1/rounds`: one event per finished billing round.
pub async fn rounds(
    State(state): State<AppState>,
    _plugin: Plugin,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.rounds.subscribe();
    Sse::new(messages(None, receiver, None)).keep_alive(KeepAlive::new().interval(KEEPALIVE))
}
