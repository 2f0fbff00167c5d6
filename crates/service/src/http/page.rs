//! The browser page (`GET /`): the user's credits, live; admins also see every
//! user. Login goes through the hub's OAuth, as for any hub service.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use super::caller::{TOKEN_COOKIE, cookie, identify, token_of};
use crate::state::AppState;

const STATE_COOKIE: &str = "jupyterhub-credits-oauth-state";

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/oauth_callback", get(callback))
        .route("/logout", get(logout))
}

fn parts_of(headers: &HeaderMap, uri: &axum::http::Uri) -> axum::http::request::Parts {
    let mut request = axum::http::Request::builder()
        .uri(uri.clone())
        .body(())
        .expect("a request");
    *request.headers_mut() = headers.clone();
    request.into_parts().0
}

async fn page(State(state): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let parts = parts_of(&headers, &uri);
    if let Some(token) = token_of(&parts)
        && let Ok(Some(_)) = identify(&state, &token).await
    {
        return Html(PAGE.replace("{{prefix}}", &state.config.service_prefix)).into_response();
    }
    login_redirect(&state)
}

fn login_redirect(state: &AppState) -> Response {
    let (Some(client_id), Some(callback)) = (
        &state.config.oauth_client_id,
        &state.config.oauth_callback_url,
    ) else {
        return (
            StatusCode::UNAUTHORIZED,
            "Log in through the hub first: this service has no OAuth client configured (JUPYTERHUB_CLIENT_ID).",
        )
            .into_response();
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut authorize = format!(
        "{}{}hub/api/oauth2/authorize?",
        state.config.hub_host, state.config.base_url
    );
    authorize.push_str(
        &url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", callback)
            .append_pair("response_type", "code")
            .append_pair("state", &nonce)
            .finish(),
    );
    let mut response = Redirect::to(&authorize).into_response();
    let cookie = format!(
        "{STATE_COOKIE}={nonce}; Path={}; HttpOnly; SameSite=Lax; Max-Age=600",
        state.config.service_prefix
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let parts = parts_of(&headers, &uri);
    let mut code = None;
    let mut returned_state = None;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => returned_state = Some(v.into_owned()),
            _ => {}
        }
    }
    let expected = cookie(&parts, STATE_COOKIE);
    let (Some(code), Some(returned), Some(expected)) = (code, returned_state, expected) else {
        return (
            StatusCode::BAD_REQUEST,
            "OAuth callback without code or state; start again from the page.",
        )
            .into_response();
    };
    if returned != expected {
        return (
            StatusCode::FORBIDDEN,
            "OAuth state mismatch; start again from the page.",
        )
            .into_response();
    }
    let (Some(client_id), Some(redirect)) = (
        &state.config.oauth_client_id,
        &state.config.oauth_callback_url,
    ) else {
        return (StatusCode::UNAUTHORIZED, "no OAuth client configured").into_response();
    };
    match state.hub.oauth_token(client_id, &code, redirect).await {
        Ok(token) => {
            let mut response = Redirect::to(&state.config.service_prefix).into_response();
            let prefix = &state.config.service_prefix;
            for cookie in [
                format!("{TOKEN_COOKIE}={token}; Path={prefix}; HttpOnly; SameSite=Lax"),
                format!("{STATE_COOKIE}=; Path={prefix}; Max-Age=0"),
            ] {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(error) => {
            tracing::warn!(%error, "OAuth token exchange failed");
            (
                StatusCode::BAD_GATEWAY,
                "The hub did not complete the login; try again.",
            )
                .into_response()
        }
    }
}

async fn logout(State(state): State<AppState>) -> Response {
    let mut response =
        Redirect::to(&format!("{}hub/logout", state.config.base_url)).into_response();
    let cookie = format!(
        "{TOKEN_COOKIE}=; Path={}; Max-Age=0",
        state.config.service_prefix
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

const PAGE: &str = include_str!("page.html");
