//! `internal/v1/`: what the hub plugin calls, behind the shared secret.
//! The plugin hands over the operator's config and each spawn's lifecycle;
//! it keeps no credit state of its own.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use credit_ledger::{Admission, PoolConfig, ProjectConfig, SpawnRequest};

use super::api::{apply_pool_patch, apply_project_patch};
use super::caller::Plugin;
use super::error::{ApiError, ApiResult};
use super::views::{PoolJson, ProjectJson, UserJson};
use crate::round;
use crate::state::AppState;

/// The header naming the admin a forwarded change is made for.
pub const ACTOR_HEADER: &str = "x-credits-actor";

/// The plugin's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/projects", put(put_projects))
        .route("/internal/v1/users/{name}", put(put_user).get(get_user))
        .route("/internal/v1/users/{name}/pools/{pool}", patch(patch_pool))
        .route("/internal/v1/projects/{name}", patch(patch_project))
        .route("/internal/v1/spawns", post(admit))
        .route("/internal/v1/spawns/{key}/ready", post(ready))
        .route("/internal/v1/spawns/{key}/stopped", post(stopped))
        .route("/internal/v1/rounds", get(super::stream::rounds))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectBody {
    name: String,
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
}

async fn put_projects(
    State(state): State<AppState>,
    _: Plugin,
    body: Bytes,
) -> ApiResult<Json<Vec<ProjectJson>>> {
    let projects: Vec<ProjectBody> = parse(&body)?;
    let mut out = Vec::with_capacity(projects.len());
    for p in projects {
        let cfg = ProjectConfig {
            name: p.name,
            cap: p.cap,
            grant_value: p.grant_value,
            grant_interval: p.grant_interval,
        };
        out.push(state.ledger.upsert_project(&cfg).await?.into());
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolBody {
    name: String,
    cap: i64,
    grant_value: i64,
    grant_interval: i64,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    user_options: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    pools: Vec<PoolBody>,
}

async fn put_user(
    State(state): State<AppState>,
    _: Plugin,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<UserJson>> {
    let user: UserBody = parse(&body)?;
    let pools: Vec<PoolConfig> = user
        .pools
        .into_iter()
        .map(|p| PoolConfig {
            name: p.name,
            cap: p.cap,
            grant_value: p.grant_value,
            grant_interval: p.grant_interval,
            project: p.project,
            user_options: p.user_options,
        })
        .collect();
    let view = state.ledger.upsert_user(&name, &pools).await?;
    state.push_views([name]).await;
    Ok(Json(view.into()))
}

async fn get_user(
    State(state): State<AppState>,
    _: Plugin,
    Path(name): Path<String>,
) -> ApiResult<Json<UserJson>> {
    Ok(Json(state.ledger.user_view(&name).await?.into()))
}

fn actor(headers: &HeaderMap) -> ApiResult<String> {
    headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("forwarded changes need the {ACTOR_HEADER} header"))
        })
}

async fn patch_pool(
    State(state): State<AppState>,
    _: Plugin,
    headers: HeaderMap,
    Path((name, pool)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<PoolJson>> {
    let actor = actor(&headers)?;
    Ok(Json(
        apply_pool_patch(&state, &name, &pool, &body, &actor).await?,
    ))
}

async fn patch_project(
    State(state): State<AppState>,
    _: Plugin,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ProjectJson>> {
    let actor = actor(&headers)?;
    Ok(Json(
        apply_project_patch(&state, &name, &body, &actor).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnBody {
    user: String,
    #[serde(default)]
    server_name: String,
    server_key: String,
    #[serde(default)]
    user_options: Value,
    billing_value: i64,
    billing_interval: i64,
    #[serde(default = "default_promise_secs")]
    promise_secs: i64,
}

fn default_promise_secs() -> i64 {
    900
}

async fn admit(State(state): State<AppState>, _: Plugin, body: Bytes) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let b: SpawnBody = parse(&body)?;
    let user = b.user.clone();
    let decision = state
        .ledger
        .admit(&SpawnRequest {
            user: b.user,
            server_name: b.server_name,
            server_key: b.server_key,
            user_options: if b.user_options.is_null() {
                json!({})
            } else {
                b.user_options
            },
            billing_value: b.billing_value,
            billing_interval: b.billing_interval,
            promise_secs: b.promise_secs,
        })
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let reply = match decision {
        Admission::Admitted { pool } => {
            state.metrics.admission(true, seconds);
            json!({"admitted": true, "pool": pool})
        }
        Admission::Refused(r) => {
            state.metrics.admission(false, seconds);
            json!({
                "admitted": false,
                "message": r.message,
                "required": r.required,
                "billing_interval": r.billing_interval,
                "promised": r.promised,
                "pool": r.pool.map(PoolJson::from),
                "next_grant_at": r.next_grant_at.map(credit_ledger::clock::iso8601),
            })
        }
    };
    state.push_views([user]).await;
    Ok(Json(reply))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReadyBody {
    #[serde(default)]
    ready_at: Option<String>,
}

async fn ready(
    State(state): State<AppState>,
    _: Plugin,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let b: ReadyBody = if body.is_empty() {
        ReadyBody::default()
    } else {
        parse(&body)?
    };
    let ready_at = match b.ready_at {
        None => state.ledger.now(),
        Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
            .map_err(|e| {
                ApiError::BadRequest(format!("ready_at: {text:?} is not an ISO 8601 time: {e}"))
            })?
            .timestamp_millis(),
    };
    let stop = state.ledger.mark_ready(&key, ready_at).await?;
    if let Some(server) = state.ledger.server(&key).await? {
        state.push_views([server.user]).await;
    }
    let reply = match stop {
        Some(order) => {
            let reason = order.reason.clone();
            round::ensure_stopped(&state, order);
            json!({"stop": {"reason": reason}})
        }
        None => json!({"stop": null}),
    };
    Ok(Json(reply))
}

async fn stopped(
    State(state): State<AppState>,
    _: Plugin,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let server = state.ledger.server(&key).await?;
    let ended = state.ledger.mark_stopped(&key).await?;
    if let Some(server) = server {
        state.push_views([server.user]).await;
    }
    Ok(Json(json!({"ended": ended})))
}
