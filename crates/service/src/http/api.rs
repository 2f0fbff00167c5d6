//! `api/v1/`: the user and admin endpoints of DESIGN §4.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use credit_ledger::{Actor, PoolPatch, ProjectPatch};

use super::caller::Caller;
use super::error::{ApiError, ApiResult};
use super::input::{self, Query};
use super::views::{JournalJson, Page, PoolJson, ProjectJson, UserJson};
use crate::state::{AppState, Unbilled};

/// The v1 routes (without the SSE stream, which `stream.rs` adds).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{name}", get(user))
        .route(
            "/api/v1/users/{name}/pools/{pool}",
            axum::routing::patch(patch_pool),
        )
        .route("/api/v1/users/{name}/journal", get(user_journal))
        .route("/api/v1/projects", get(list_projects))
        .route("/api/v1/projects/{name}", get(project).patch(patch_project))
        .route("/api/v1/projects/{name}/journal", get(project_journal))
        .route("/api/v1/unbilled", get(unbilled))
}

async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<UserJson>> {
    Ok(Json(state.ledger.user_view(&caller.0.name).await?.into()))
}

async fn user(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<UserJson>> {
    caller.require_self_or_admin(&name)?;
    Ok(Json(state.ledger.user_view(&name).await?.into()))
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<UserJson>>> {
    caller.require_admin()?;
    let q = Query::parse(raw.as_deref(), &["limit", "after"])?;
    let limit = q.limit()?;
    let views = state
        .ledger
        .list_users(q.text("after").unwrap_or(""), limit)
        .await?;
    let next = (views.len() as i64 == limit)
        .then(|| views.last().map(|v| json!(v.name)))
        .flatten();
    Ok(Json(Page {
        items: views.into_iter().map(UserJson::from).collect(),
        next,
    }))
}

/// Applies an admin patch to one of a user's pools; shared with the
/// compatibility endpoint the plugin forwards.
pub async fn apply_pool_patch(
    state: &AppState,
    user: &str,
    pool: &str,
    body: &[u8],
    actor: &str,
) -> ApiResult<PoolJson> {
    let p = input::patch(body, true)?;
    let view = state
        .ledger
        .adjust_user_pool(
            user,
            pool,
            &PoolPatch {
                balance: p.balance,
                cap: p.cap,
                grant_value: p.grant_value,
                grant_interval: p.grant_interval,
                project: p.project,
            },
            &Actor {
                name: actor.to_string(),
                reason: p.reason,
            },
        )
        .await?;
    state.push_views([user.to_string()]).await;
    Ok(view.into())
}

/// Applies an admin patch to a project; shared with the compatibility endpoint.
pub async fn apply_project_patch(
    state: &AppState,
    name: &str,
    body: &[u8],
    actor: &str,
) -> ApiResult<ProjectJson> {
    let p = input::patch(body, false)?;
    let view = state
        .ledger
        .adjust_project(
            name,
            &ProjectPatch {
                balance: p.balance,
                cap: p.cap,
                grant_value: p.grant_value,
                grant_interval: p.grant_interval,
            },
            &Actor {
                name: actor.to_string(),
                reason: p.reason,
            },
        )
        .await?;
    if let Ok(members) = state.ledger.project_members(name).await {
        state.push_views(members).await;
    }
    Ok(view.into())
}

async fn patch_pool(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, pool)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<PoolJson>> {
    caller.require_admin()?;
    Ok(Json(
        apply_pool_patch(&state, &name, &pool, &body, &caller.0.name).await?,
    ))
}

async fn user_journal(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<JournalJson>>> {
    caller.require_self_or_admin(&name)?;
    let q = Query::parse(raw.as_deref(), &["limit", "before"])?;
    let limit = q.limit()?;
    // An unknown user is a 404, not an empty journal.
    state.ledger.user_view(&name).await?;
    let entries = state
        .ledger
        .user_journal(&name, q.id("before")?, limit)
        .await?;
    Ok(Json(journal_page(entries, limit)))
}

fn journal_page(entries: Vec<credit_ledger::JournalEntry>, limit: i64) -> Page<JournalJson> {
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| json!(e.id)))
        .flatten();
    Page {
        items: entries.into_iter().map(JournalJson::from).collect(),
        next,
    }
}

async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<ProjectJson>>> {
    caller.require_admin()?;
    let q = Query::parse(raw.as_deref(), &["limit", "after"])?;
    let limit = q.limit()?;
    let views = state
        .ledger
        .list_projects(q.text("after").unwrap_or(""), limit)
        .await?;
    let next = (views.len() as i64 == limit)
        .then(|| views.last().map(|v| json!(v.name)))
        .flatten();
    Ok(Json(Page {
        items: views.into_iter().map(ProjectJson::from).collect(),
        next,
    }))
}

/// 403 unless the caller is an admin or a member of the project.
async fn require_member_or_admin(
    state: &AppState,
    caller: &Caller,
    project: &str,
) -> ApiResult<()> {
    if caller.is_admin() {
        return Ok(());
    }
    let members = state.ledger.project_members(project).await?;
    if caller.0.kind == "user" && members.contains(&caller.0.name) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only members of project {project:?} and admins may see it"
        )))
    }
}

async fn project(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ProjectJson>> {
    require_member_or_admin(&state, &caller, &name).await?;
    Ok(Json(state.ledger.project_view(&name).await?.into()))
}

async fn patch_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ProjectJson>> {
    caller.require_admin()?;
    Ok(Json(
        apply_project_patch(&state, &name, &body, &caller.0.name).await?,
    ))
}

async fn project_journal(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<JournalJson>>> {
    require_member_or_admin(&state, &caller, &name).await?;
    let q = Query::parse(raw.as_deref(), &["limit", "before"])?;
    let limit = q.limit()?;
    let entries = state
        .ledger
        .project_journal(&name, q.id("before")?, limit)
        .await?;
    Ok(Json(journal_page(entries, limit)))
}

async fn unbilled(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Unbilled>>> {
    caller.require_admin()?;
    Ok(Json(state.unbilled.lock().expect("unbilled lock").clone()))
}
