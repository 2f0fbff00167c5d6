//! Extractors for who is calling: [`Caller`] (a hub token or the login
//! cookie) and [`Plugin`] (the hub plugin's shared secret).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth::secrets_equal;
use crate::hub::Identity;
use crate::state::AppState;

/// The cookie holding the OAuth token of a browser login.
pub const TOKEN_COOKIE: &str = "jupyterhub-credits-token";
/// The header carrying the hub plugin's shared secret.
pub const PLUGIN_SECRET_HEADER: &str = "x-credits-plugin-secret";

/// A caller authenticated by the hub.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl Caller {
    /// Admin of credits: the hub scope `admin:users`.
    pub fn is_admin(&self) -> bool {
        self.0.is_admin()
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this needs the hub scope admin:users".into(),
            ))
        }
    }

    /// 403 unless the caller is `user` or an admin.
    pub fn require_self_or_admin(&self, user: &str) -> Result<(), ApiError> {
        if self.0.name == user && self.0.kind == "user" || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "you may only see your own credits, not those of {user:?}"
            )))
        }
    }
}

/// The token a request carries: `Authorization: token|Bearer …`, then
/// `?token=`, then the login cookie.
pub fn token_of(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        let mut words = value.splitn(2, ' ');
        let scheme = words.next().unwrap_or("").to_ascii_lowercase();
        let token = words.next().unwrap_or("").trim();
        if (scheme == "token" || scheme == "bearer") && !token.is_empty() {
            return Some(token.to_string());
        }
    }
    if let Some(query) = parts.uri.query() {
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k == "token" && !v.is_empty() {
                return Some(v.into_owned());
            }
        }
    }
    cookie(parts, TOKEN_COOKIE)
}

/// A cookie's value.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Checks `token` with the hub (or the cache).
pub async fn identify(state: &AppState, token: &str) -> Result<Option<Identity>, ApiError> {
    // Hub tokens are printable ASCII; anything else can't even be sent to
    // the hub in a header, and is no hub's token.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(None);
    }
    if let Some(known) = state.tokens.get(token) {
        return Ok(known);
    }
    match state.hub.identify(token).await {
        Ok(identity) => {
            state.tokens.put(token, identity.clone());
            Ok(identity)
        }
        Err(error) => {
            state.metrics.hub_errors.inc();
            tracing::warn!(%error, "could not check a token with the hub");
            Err(ApiError::Unavailable(
                "the hub can't be reached to check your token; try again shortly".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = token_of(parts) else {
            return Err(ApiError::Unauthorized(
                "authentication required: send a hub API token (Authorization: token …) or log in through the hub".into(),
            ));
        };
        match identify(state, &token).await? {
            Some(identity) => Ok(Caller(identity)),
            None => Err(ApiError::Unauthorized(
                "the hub does not accept this token; it may have expired".into(),
            )),
        }
    }
}

/// The hub plugin, proven by the shared secret.
#[derive(Debug, Clone, Copy)]
pub struct Plugin;

impl FromRequestParts<AppState> for Plugin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let given = parts
            .headers
            .get(PLUGIN_SECRET_HEADER)
            .and_then(|v| v.to_str().ok());
        let Some(given) = given else {
            return Err(ApiError::Unauthorized(format!(
                "plugin endpoints need the {PLUGIN_SECRET_HEADER} header"
            )));
        };
        match &state.config.plugin_secret {
            Some(expected) if secrets_equal(given, expected) => Ok(Plugin),
            Some(_) => Err(ApiError::Forbidden("wrong plugin secret".into())),
            None => Err(ApiError::Forbidden(
                "no plugin secret is configured (CREDIT_SERVICE_PLUGIN_SECRET); plugin endpoints are off".into(),
            )),
        }
    }
}
