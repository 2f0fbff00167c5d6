//! The hub's REST API, as this service uses it: list ready servers, stop a
//! server, identify a token, finish an OAuth login. Nothing else in the
//! service speaks to the hub.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use credit_ledger::Millis;

/// Page size when listing users; the hub caps it at its own maximum.
const PAGE_SIZE: usize = 200;
/// Every hub request gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Pages listed at most in one listing: a bound on a misbehaving pager.
const PAGES_MAX: usize = 10_000;

/// Why a hub call failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub could not be reached or did not answer in time.
    #[error("the hub is unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    /// The hub answered with an unexpected status.
    #[error("the hub answered {status} to {what}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The call made.
        what: String,
        /// The start of the body.
        body: String,
    },
}

/// A ready server as the hub lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct HubServer {
    /// Its user.
    pub user: String,
    /// Its name; empty for the default server.
    pub name: String,
    /// When the hub started it.
    pub started: Option<Millis>,
    /// The options it was started with.
    pub user_options: Value,
}

/// Who a token belongs to, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user or service name.
    pub name: String,
    /// "user" or "service".
    pub kind: String,
    /// The token's scopes, as the hub resolved them.
    pub scopes: Vec<String>,
}

impl Identity {
    /// Holds the unrestricted scope `name` (`admin:users`, not
    /// `admin:users!group=x`).
    pub fn has_scope(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s == name)
    }

    /// An admin of credits: the hub scope `admin:users`.
    pub fn is_admin(&self) -> bool {
        self.has_scope("admin:users")
    }
}

/// Where a stop request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopState {
    /// The server is gone.
    Stopped,
    /// The hub accepted the stop and is still stopping it.
    Pending,
}

/// A client for one hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    api_url: Url,
    token: String,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<UserModel>,
    #[serde(rename = "_pagination")]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    next: Option<NextPage>,
}

#[derive(Deserialize)]
struct NextPage {
    offset: usize,
}

#[derive(Deserialize)]
struct UserModel {
    name: String,
    #[serde(default)]
    servers: HashMap<String, ServerModel>,
}

#[derive(Deserialize)]
struct ServerModel {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    started: Option<String>,
    #[serde(default)]
    user_options: Option<Value>,
}

#[derive(Deserialize)]
struct WhoAmI {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

fn parse_time(text: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl HubClient {
    /// A client for the hub API at `api_url`, authenticated with `token`.
    pub fn new(api_url: Url, token: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!(
                "jupyterhub-credit-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .expect("the HTTP client builds");
        Self {
            http,
            api_url,
            token,
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_url.clone();
        {
            let mut path = url.path_segments_mut().expect("http URLs have paths");
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    fn auth(&self) -> String {
        format!("token {}", self.token)
    }

    async fn check(response: reqwest::Response, what: &str) -> Result<reqwest::Response, HubError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(HubError::Status {
            status: status.as_u16(),
            what: what.to_string(),
            body: body.chars().take(300).collect(),
        })
    }

    /// Every ready server, following the hub's pagination.
    pub async fn ready_servers(&self) -> Result<Vec<HubServer>, HubError> {
        let mut servers = Vec::new();
        let mut offset = 0;
        for _ in 0..PAGES_MAX {
            let mut url = self.url(&["users"]);
            url.query_pairs_mut()
                .append_pair("state", "ready")
                .append_pair("offset", &offset.to_string())
                .append_pair("limit", &PAGE_SIZE.to_string());
            let response = self
                .http
                .get(url)
                .header("Authorization", self.auth())
                .header("Accept", "application/jupyterhub-pagination+json")
                .send()
                .await?;
            let page: Page = Self::check(response, "GET users?state=ready")
                .await?
                .json()
                .await?;
            for user in page.items {
                for (name, server) in user.servers {
                    if server.ready {
                        servers.push(HubServer {
                            user: user.name.clone(),
                            name,
                            started: server.started.as_deref().and_then(parse_time),
                            user_options: server.user_options.unwrap_or(Value::Null),
                        });
                    }
                }
            }
            match page.pagination.and_then(|p| p.next) {
                Some(next) if next.offset > offset => offset = next.offset,
                _ => break,
            }
        }
        Ok(servers)
    }

    /// Asks the hub to stop a server.
    pub async fn stop_server(&self, user: &str, name: &str) -> Result<StopState, HubError> {
        let url = if name.is_empty() {
            self.url(&["users", user, "server"])
        } else {
            self.url(&["users", user, "servers", name])
        };
        let response = self
            .http
            .delete(url)
            .header("Authorization", self.auth())
            .send()
            .await?;
        match response.status().as_u16() {
            202 => Ok(StopState::Pending),
            204 | 200 => Ok(StopState::Stopped),
            // Not running, or the user or server is gone: nothing left to stop.
            400 | 404 => Ok(StopState::Stopped),
            _ => Self::check(response, "DELETE server")
                .await
                .map(|_| StopState::Pending),
        }
    }

    /// True while the hub still has the server (starting, running or stopping).
    pub async fn server_exists(&self, user: &str, name: &str) -> Result<bool, HubError> {
        let response = self
            .http
            .get(self.url(&["users", user]))
            .header("Authorization", self.auth())
            .send()
            .await?;
        if response.status().as_u16() == 404 {
            return Ok(false);
        }
        let model: UserModel = Self::check(response, "GET user").await?.json().await?;
        Ok(model.servers.contains_key(name))
    }

    /// Who `token` belongs to; `None` when the hub does not accept it.
    pub async fn identify(&self, token: &str) -> Result<Option<Identity>, HubError> {
        let response = self
            .http
            .get(self.url(&["user"]))
            .header("Authorization", format!("token {token}"))
            .send()
            .await?;
        if matches!(response.status().as_u16(), 401 | 403 | 404) {
            return Ok(None);
        }
        let who: WhoAmI = Self::check(response, "GET user").await?.json().await?;
        Ok(Some(Identity {
            name: who.name,
            kind: who.kind.unwrap_or_else(|| "user".into()),
            scopes: who.scopes,
        }))
    }

    /// Exchanges an OAuth authorization code for an access token.
    pub async fn oauth_token(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<String, HubError> {
        #[derive(Deserialize)]
        struct TokenReply {
            access_token: String,
        }
        let response = self
            .http
            .post(self.url(&["oauth2", "token"]))
            .form(&[
                ("client_id", client_id),
                ("client_secret", self.token.as_str()),
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
            ])
            .send()
            .await?;
        let reply: TokenReply = Self::check(response, "POST oauth2/token")
            .await?
            .json()
            .await?;
        Ok(reply.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_names() {
        let hub = HubClient::new(
            Url::parse("http://127.0.0.1:8081/hub/api/").unwrap(),
            "t".into(),
        );
        assert_eq!(
            hub.url(&["users", "jürgen/x", "servers", "a b"]).as_str(),
            "http://127.0.0.1:8081/hub/api/users/j%C3%BCrgen%2Fx/servers/a%20b"
        );
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_time("garbage"), None);
    }
}
