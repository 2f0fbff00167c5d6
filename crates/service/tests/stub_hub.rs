//! A stub of the JupyterHub REST API: exactly what `hub.rs` calls, with
//! switches for failures and records of what the service asked.
//!
//! - `GET /hub/api/users?state=ready&offset&limit`, paginated with at most
//!   [`PAGE_SIZE`] users per page, in the `application/jupyterhub-pagination+json`
//!   shape;
//! - `DELETE /hub/api/users/{u}/server` and `/users/{u}/servers/{name}`:
//!   204 and gone at once, or 202 and gone after a delay;
//! - `GET /hub/api/users/{u}`;
//! - `GET /hub/api/user`: the identity of a token, 403 for unknown tokens.
//!
//! The stub listens behind a small TCP gate, so that "the hub is down" is a
//! real refused connection, not an HTTP answer.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use credit_ledger::{Clock, ManualClock};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Users per page of the listing: small, so that every listing pages.
pub const PAGE_SIZE: usize = 2;
/// The service's own token, as the hub knows it.
pub const SERVICE_TOKEN: &str = "service-token";

/// A server as the hub shows it.
#[derive(Debug, Clone)]
pub struct StubServer {
    /// Ready (running and answering).
    pub ready: bool,
    /// "spawn", "stop" or none.
    pub pending: Option<&'static str>,
    /// When it was started (ISO 8601).
    pub started: String,
    /// The options the user chose.
    pub user_options: Value,
}

/// Everything the stub knows and records.
#[derive(Default)]
pub struct HubState {
    /// user -> server name ("" for the default server) -> server.
    pub users: BTreeMap<String, BTreeMap<String, StubServer>>,
    /// token -> the `GET /hub/api/user` model.
    pub tokens: HashMap<String, Value>,
    /// Every DELETE answered (not failed): (user, server name), in order.
    pub deletes: Vec<(String, String)>,
    /// Every DELETE that reached the stub, failed ones included.
    pub delete_attempts: usize,
    /// Calls of `GET /hub/api/user`.
    pub identify_calls: usize,
    /// The offsets of every page of ready servers asked for.
    pub list_offsets: Vec<usize>,
    /// Answer every call with 500.
    pub failing: bool,
    /// None: a DELETE answers 204 and the server is gone. Some(d): 202, gone after d.
    pub stop_delay: Option<Duration>,
}

struct Shared {
    state: Mutex<HubState>,
    down: watch::Sender<bool>,
    clock: ManualClock,
}

/// A running stub hub; cheap to clone.
#[derive(Clone)]
pub struct StubHub {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// The identity model of a user token.
pub fn user_identity(name: &str, extra_scopes: &[&str]) -> Value {
    let mut scopes = vec![
        format!("access:servers!user={name}"),
        format!("read:users!user={name}"),
        format!("users:activity!user={name}"),
        format!("servers!user={name}"),
        format!("delete:servers!user={name}"),
    ];
    scopes.extend(extra_scopes.iter().map(|s| s.to_string()));
    json!({"kind": "user", "name": name, "admin": false, "groups": [], "scopes": scopes})
}

impl StubHub {
    /// Starts a stub on a free port; `clock` dates the servers' start times.
    pub async fn start(clock: ManualClock) -> Self {
        let (down, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            down,
            clock,
        });
        shared.state.lock().unwrap().tokens.insert(
            SERVICE_TOKEN.into(),
            json!({"kind": "service", "name": "credits", "scopes": ["list:users", "read:users", "admin:servers"]}),
        );
        let app = Router::new()
            .route("/hub/api/users", get(list_users))
            .route("/hub/api/users/{user}", get(get_user))
            .route(
                "/hub/api/users/{user}/server",
                axum::routing::delete(delete_default),
            )
            .route(
                "/hub/api/users/{user}/servers/{name}",
                axum::routing::delete(delete_named),
            )
            .route("/hub/api/user", get(whoami))
            .with_state(shared.clone());
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(backend, app).await.unwrap() });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        tokio::spawn(gate(front, backend_addr, shared.down.subscribe()));
        Self { shared, addr }
    }

    /// The hub API URL to give the service.
    pub fn api_url(&self) -> String {
        format!("http://{}/hub/api/", self.addr)
    }

    /// The stub's state, to read or change.
    pub fn state(&self) -> MutexGuard<'_, HubState> {
        self.shared.state.lock().unwrap()
    }

    /// Makes a token known as `identity`.
    pub fn add_token(&self, token: &str, identity: Value) {
        self.state().tokens.insert(token.into(), identity);
    }

    /// A user without servers (known to `GET /users/{u}`).
    pub fn add_user(&self, user: &str) {
        self.state().users.entry(user.into()).or_default();
    }

    /// Adds (or replaces) a server, started now.
    pub fn add_server(&self, user: &str, name: &str, ready: bool, user_options: Value) {
        let started = credit_ledger::clock::iso8601(self.shared.clock.now_ms());
        self.state().users.entry(user.into()).or_default().insert(
            name.into(),
            StubServer {
                ready,
                pending: (!ready).then_some("spawn"),
                started,
                user_options,
            },
        );
    }

    /// Marks a server ready.
    pub fn set_ready(&self, user: &str, name: &str) {
        let mut state = self.state();
        let server = state
            .users
            .get_mut(user)
            .and_then(|s| s.get_mut(name))
            .expect("a stub server");
        server.ready = true;
        server.pending = None;
    }

    /// Removes a server as if it stopped by itself (culled, crashed).
    pub fn remove_server(&self, user: &str, name: &str) {
        if let Some(servers) = self.state().users.get_mut(user) {
            servers.remove(name);
        }
    }

    /// True while the hub has this server.
    pub fn has_server(&self, user: &str, name: &str) -> bool {
        self.state()
            .users
            .get(user)
            .is_some_and(|s| s.contains_key(name))
    }

    /// The DELETEs received so far.
    pub fn deletes(&self) -> Vec<(String, String)> {
        self.state().deletes.clone()
    }

    /// DELETEs that reached the stub so far, failed ones included.
    pub fn delete_attempts(&self) -> usize {
        self.state().delete_attempts
    }

    /// Calls of `GET /hub/api/user` so far.
    pub fn identify_calls(&self) -> usize {
        self.state().identify_calls
    }

    /// Answer 500 to everything (or stop doing so).
    pub fn set_failing(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// Refuse connections (or accept them again).
    pub fn set_down(&self, down: bool) {
        self.shared.down.send_replace(down);
    }

    /// None: DELETE answers 204 and removes at once; Some(d): 202, removed after d.
    pub fn set_stop_delay(&self, delay: Option<Duration>) {
        self.state().stop_delay = delay;
    }
}

/// Forwards connections to the stub while up; drops them (and every open
/// one) while down.
async fn gate(front: TcpListener, backend: SocketAddr, down: watch::Receiver<bool>) {
    loop {
        let Ok((mut inbound, _)) = front.accept().await else {
            continue;
        };
        if *down.borrow() {
            drop(inbound);
            continue;
        }
        let mut down = down.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(backend).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = down.wait_for(|d| *d) => {}
            }
        });
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"status": status.as_u16(), "message": message})),
    )
        .into_response()
}

/// The token of a request, if any.
fn token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    matches!(scheme.to_ascii_lowercase().as_str(), "token" | "bearer").then(|| token.to_string())
}

/// The refusal when the failure switch is on or the caller is not the service.
fn guard(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if shared.state.lock().unwrap().failing {
        return Some(error(StatusCode::INTERNAL_SERVER_ERROR, "stub hub failing"));
    }
    if token(headers).as_deref() != Some(SERVICE_TOKEN) {
        return Some(error(StatusCode::FORBIDDEN, "not the service's token"));
    }
    None
}

fn server_model(user: &str, name: &str, s: &StubServer) -> Value {
    let url = if name.is_empty() {
        format!("/user/{user}/")
    } else {
        format!("/user/{user}/{name}/")
    };
    json!({
        "name": name,
        "ready": s.ready,
        "pending": s.pending,
        "stopped": false,
        "started": s.started,
        "last_activity": s.started,
        "url": url,
        "progress_url": format!("/hub/api/users/{user}/server/progress"),
        "user_options": s.user_options,
        "state": {},
    })
}

fn user_model(user: &str, servers: &BTreeMap<String, StubServer>) -> Value {
    let servers: serde_json::Map<String, Value> = servers
        .iter()
        .map(|(name, s)| (name.clone(), server_model(user, name, s)))
        .collect();
    json!({
        "kind": "user",
        "name": user,
        "admin": false,
        "groups": [],
        "server": null,
        "pending": null,
        "created": "2026-01-01T00:00:00.000000Z",
        "last_activity": null,
        "servers": servers,
    })
}

async fn list_users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = guard(&shared, &headers) {
        return r;
    }
    let offset: usize = query
        .get("offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(PAGE_SIZE)
        .clamp(1, PAGE_SIZE);
    let mut state = shared.state.lock().unwrap();
    state.list_offsets.push(offset);
    let ready_only = query.get("state").map(String::as_str) == Some("ready");
    let matching: Vec<Value> = state
        .users
        .iter()
        .filter(|(_, servers)| !ready_only || servers.values().any(|s| s.ready))
        .map(|(user, servers)| {
            // As the hub does for state=ready: only the ready servers.
            let shown: BTreeMap<String, StubServer> = servers
                .iter()
                .filter(|(_, s)| !ready_only || s.ready)
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect();
            user_model(user, &shown)
        })
        .collect();
    let total = matching.len();
    let items: Vec<Value> = matching.into_iter().skip(offset).take(limit).collect();
    let paginated = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/jupyterhub-pagination+json"));
    if !paginated {
        return Json(Value::Array(items)).into_response();
    }
    let next = (offset + limit < total).then(|| {
        json!({
            "offset": offset + limit,
            "limit": limit,
            "url": format!("/hub/api/users?state=ready&offset={}&limit={limit}", offset + limit),
        })
    });
    (
        [("content-type", "application/jupyterhub-pagination+json")],
        Json(json!({
            "items": items,
            "_pagination": {"offset": offset, "limit": limit, "total": total, "next": next},
        })),
    )
        .into_response()
}

async fn get_user(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Some(r) = guard(&shared, &headers) {
        return r;
    }
    let state = shared.state.lock().unwrap();
    match state.users.get(&user) {
        Some(servers) => Json(user_model(&user, servers)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such user"),
    }
}

fn delete(shared: &Arc<Shared>, headers: &HeaderMap, user: String, name: String) -> Response {
    shared.state.lock().unwrap().delete_attempts += 1;
    if let Some(r) = guard(shared, headers) {
        return r;
    }
    let mut state = shared.state.lock().unwrap();
    state.deletes.push((user.clone(), name.clone()));
    let delay = state.stop_delay;
    let Some(servers) = state.users.get_mut(&user) else {
        return error(StatusCode::NOT_FOUND, "no such user");
    };
    let Some(server) = servers.get_mut(&name) else {
        return error(StatusCode::NOT_FOUND, "no such server");
    };
    match delay {
        None => {
            servers.remove(&name);
            StatusCode::NO_CONTENT.into_response()
        }
        Some(delay) => {
            server.ready = false;
            server.pending = Some("stop");
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(servers) = shared.state.lock().unwrap().users.get_mut(&user) {
                    servers.remove(&name);
                }
            });
            StatusCode::ACCEPTED.into_response()
        }
    }
}

async fn delete_default(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    delete(&shared, &headers, user, String::new())
}

async fn delete_named(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((user, name)): Path<(String, String)>,
) -> Response {
    delete(&shared, &headers, user, name)
}

async fn whoami(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut state = shared.state.lock().unwrap();
    state.identify_calls += 1;
    if state.failing {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "stub hub failing");
    }
    match token(&headers).and_then(|t| state.tokens.get(&t).cloned()) {
        Some(identity) => Json(identity).into_response(),
        None => error(StatusCode::FORBIDDEN, "invalid token"),
    }
}
