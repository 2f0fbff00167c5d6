//! A service on a fresh database (SQLite file or PostgreSQL database of its
//! own), a manual clock and a stub hub, driven through its router.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use clap::Parser;
use credit_ledger::{Ledger, ManualClock, Millis};
use credit_service::{AppState, Config};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::stub_hub::{SERVICE_TOKEN, StubHub, user_identity};

/// 2026-11-01T00:00:00Z: tests start here.
pub const START: Millis = 1_793_491_200_000;
/// The plugin's shared secret.
pub const SECRET: &str = "s3cret-of-the-plugin";
/// The service prefix.
pub const PREFIX: &str = "/services/credits/";

/// Tokens the stub hub knows.
pub const ADA: &str = "ada-token";
pub const BOB: &str = "bob-token";
pub const ADMIN: &str = "admin-token";
/// The admin's user name.
pub const ADMIN_NAME: &str = "root";
/// `read:metrics` only.
pub const METRICS: &str = "metrics-token";
/// `admin:users` restricted to a group: not an admin of credits.
pub const GROUP_ADMIN: &str = "group-admin-token";
/// A token the hub rejects.
pub const REJECTED: &str = "expired-token";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Removes the test's database when the test ends.
enum DbGuard {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        match self {
            DbGuard::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            DbGuard::Postgres { admin_url, name } => {
                let _ = psql(
                    admin_url,
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                );
            }
        }
    }
}

/// The PostgreSQL server tests use (trust auth).
pub fn postgres_admin_url() -> String {
    std::env::var("CREDIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qXc", sql])
        .output()
        .map_err(|e| format!("psql can't be run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts 200 and returns the JSON body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text());
        self.json()
    }

    /// Asserts an error of the API's shape (`{"status", "message"}`, JSON
    /// content type, no redirect) and returns its message.
    #[track_caller]
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        self.assert_error_shape()
    }

    /// Asserts the body is an API error whose status matches the reply's.
    #[track_caller]
    pub fn assert_error_shape(&self) -> String {
        match self.error_problem() {
            Ok(message) => message,
            Err(problem) => panic!("{problem}"),
        }
    }

    /// The message of an API error (`{"status", "message"}` with the
    /// reply's status, JSON content type, no redirect), or what is wrong.
    pub fn error_problem(&self) -> Result<String, String> {
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let shown: String = self.text().chars().take(300).collect();
        if !content_type.starts_with("application/json") {
            return Err(format!(
                "{} with content type {content_type:?}: {shown:?}",
                self.status
            ));
        }
        if self.headers.get("location").is_some() {
            return Err(format!("{}: an error must not redirect", self.status));
        }
        let body: Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("{}: body is not JSON ({e}): {shown:?}", self.status))?;
        if body["status"].as_u64() != Some(u64::from(self.status.as_u16())) {
            return Err(format!("{}: wrong status in {body}", self.status));
        }
        let Some(message) = body["message"].as_str() else {
            return Err(format!("{}: no message in {body}", self.status));
        };
        if message.trim().is_empty() {
            return Err(format!("{}: empty message in {body}", self.status));
        }
        if body.as_object().map(|o| o.len()) != Some(2) {
            return Err(format!(
                "{}: an error has status and message only: {body}",
                self.status
            ));
        }
        Ok(message.to_string())
    }
}

/// A service under test.
pub struct Service {
    pub state: AppState,
    pub hub: StubHub,
    pub clock: ManualClock,
    pub app: Router,
    last_listing: Option<Instant>,
    _db: DbGuard,
}

impl Service {
    /// A service on SQLite with the default flags.
    pub async fn new() -> Self {
        Self::with(Db::Sqlite, &[]).await
    }

    /// A service on `db` with extra command-line flags.
    pub async fn with(db: Db, extra_args: &[&str]) -> Self {
        let clock = ManualClock::new(START);
        let hub = StubHub::start(clock.clone()).await;
        hub.add_token(ADA, user_identity("ada", &[]));
        hub.add_token(BOB, user_identity("bob", &[]));
        hub.add_token(
            ADMIN,
            user_identity(
                ADMIN_NAME,
                &["admin:users", "admin:servers", "list:users", "read:users"],
            ),
        );
        hub.add_token(METRICS, user_identity("prometheus", &["read:metrics"]));
        hub.add_token(
            GROUP_ADMIN,
            user_identity(
                "grace",
                &["admin:users!group=lab", "read:metrics!group=lab"],
            ),
        );

        let (database_url, guard) = match db {
            Db::Sqlite => {
                let dir = std::env::temp_dir()
                    .join(format!("credit-service-test-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}", dir.join("credits.sqlite").display());
                (url, DbGuard::Sqlite(dir))
            }
            Db::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("service_test_{}", uuid::Uuid::new_v4().simple());
                psql(&admin_url, &format!("CREATE DATABASE \"{name}\"")).unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is needed for these tests and {admin_url} can't be used ({e}). \
                         Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
                         or set CREDIT_TEST_POSTGRES_URL."
                    )
                });
                let base = admin_url.rsplit_once('/').unwrap().0;
                (
                    format!("{base}/{name}"),
                    DbGuard::Postgres { admin_url, name },
                )
            }
        };
        let hub_url = hub.api_url();
        let mut args = vec![
            "jupyterhub-credit-service",
            "--hub-api-url",
            &hub_url,
            "--api-token",
            SERVICE_TOKEN,
            "--database-url",
            &database_url,
            "--plugin-secret",
            SECRET,
            "--service-prefix",
            PREFIX,
            "--base-url",
            "/",
        ];
        args.extend_from_slice(extra_args);
        let config = Config::try_parse_from(args).expect("test config parses");
        let ledger = Ledger::open(&database_url, Arc::new(clock.clone()))
            .await
            .expect("the ledger opens");
        let hub_client = credit_service::hub::HubClient::new(
            config.hub_api_url.clone(),
            config.api_token.clone(),
        );
        let state = AppState::new(config, ledger, hub_client);
        let app = credit_service::http::app(state.clone());
        Self {
            state,
            hub,
            clock,
            app,
            last_listing: None,
            _db: guard,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, secs: i64) {
        self.clock.advance_secs(secs);
    }

    /// Sends a request to the router; `path` is below the service prefix.
    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(request).await.unwrap()
    }

    /// Builds a request below the prefix.
    pub fn request(
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Request<Body> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(body.into()).unwrap()
    }

    /// Sends a request and reads the whole reply.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let response = self.send(Self::request(method, path, headers, body)).await;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("a reply body ends (use `send` for streams)")
            .unwrap()
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path` with a hub token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        let auth = format!("token {token}");
        self.call(
            Method::GET,
            path,
            &[("authorization", &auth)],
            Body::empty(),
        )
        .await
    }

    /// `PATCH path` with a hub token and a raw body.
    pub async fn patch(&self, path: &str, token: &str, body: impl Into<Body>) -> Reply {
        let auth = format!("token {token}");
        self.call(
            Method::PATCH,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// A plugin call with the shared secret.
    pub async fn plugin(&self, method: Method, path: &str, body: Value) -> Reply {
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        self.call(
            method,
            path,
            &[
                ("x-credits-plugin-secret", SECRET),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    /// Configures projects as the plugin does at start.
    pub async fn put_projects(&self, projects: &[(&str, i64, i64, i64)]) {
        let body: Vec<Value> = projects
            .iter()
            .map(|(name, cap, gv, gi)| {
                json!({"name": name, "cap": cap, "grant_value": gv, "grant_interval": gi})
            })
            .collect();
        self.plugin(Method::PUT, "internal/v1/projects", Value::Array(body))
            .await
            .ok();
    }

    /// Configures a user with the single pool `default`, as the plugin does on login.
    pub async fn put_user(&self, name: &str, cap: i64, gv: i64, gi: i64, project: Option<&str>) {
        let pool = json!({"name": "default", "cap": cap, "grant_value": gv, "grant_interval": gi, "project": project});
        self.plugin(
            Method::PUT,
            &format!("internal/v1/users/{}", enc(name)),
            json!({"pools": [pool]}),
        )
        .await
        .ok();
    }

    /// Asks admission for a spawn; returns the plugin's answer.
    pub async fn admit(
        &self,
        user: &str,
        server: &str,
        key: &str,
        value: i64,
        interval: i64,
    ) -> Value {
        self.plugin(
            Method::POST,
            "internal/v1/spawns",
            json!({
                "user": user, "server_name": server, "server_key": key,
                "user_options": {"profile": "small"},
                "billing_value": value, "billing_interval": interval,
            }),
        )
        .await
        .ok()
    }

    /// Tells the service a spawn became ready; returns the plugin's answer.
    pub async fn ready(&self, key: &str) -> Value {
        self.plugin(
            Method::POST,
            &format!("internal/v1/spawns/{}/ready", enc(key)),
            Value::Null,
        )
        .await
        .ok()
    }

    /// Admits a spawn, starts it in the hub and reports it ready.
    pub async fn start_server(
        &self,
        user: &str,
        server: &str,
        key: &str,
        value: i64,
        interval: i64,
    ) {
        let admission = self.admit(user, server, key, value, interval).await;
        assert_eq!(admission["admitted"], true, "{admission}");
        self.hub
            .add_server(user, server, true, json!({"profile": "small"}));
        let reply = self.ready(key).await;
        assert_eq!(reply, json!({"stop": null}));
    }

    /// A billing round with a full listing of the hub.
    pub async fn round(&mut self) {
        self.last_listing = None;
        credit_service::round::round(&self.state, &mut self.last_listing).await;
    }

    /// A billing round between listings (the listing is not due).
    pub async fn round_without_listing(&mut self) {
        self.last_listing = Some(Instant::now());
        credit_service::round::round(&self.state, &mut self.last_listing).await;
    }

    /// A user's view, as an admin sees it.
    pub async fn view(&self, user: &str) -> Value {
        self.get(&format!("api/v1/users/{}", enc(user)), ADMIN)
            .await
            .ok()
    }

    /// The balance of a user's first pool.
    pub async fn balance(&self, user: &str) -> i64 {
        self.view(user).await["pools"][0]["balance"]
            .as_i64()
            .unwrap()
    }

    /// A user's whole journal, newest first.
    pub async fn journal(&self, user: &str) -> Value {
        self.get(
            &format!("api/v1/users/{}/journal?limit=1000", enc(user)),
            ADMIN,
        )
        .await
        .ok()["items"]
            .clone()
    }

    /// A project's view and whole journal.
    pub async fn project(&self, name: &str) -> (Value, Value) {
        let view = self
            .get(&format!("api/v1/projects/{}", enc(name)), ADMIN)
            .await
            .ok();
        let journal = self
            .get(
                &format!("api/v1/projects/{}/journal?limit=1000", enc(name)),
                ADMIN,
            )
            .await
            .ok()["items"]
            .clone();
        (view, journal)
    }

    /// Asserts the ledger's invariants hold.
    pub async fn assert_audit_clean(&self) {
        let problems = self.state.ledger.audit().await.unwrap();
        assert!(problems.is_empty(), "ledger audit found: {problems:#?}");
    }
}

/// Percent-encodes a path segment.
pub fn enc(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Polls `check` every few milliseconds until it returns true or `timeout`
/// passes; panics with `what` then.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Defines `mod $name { sqlite, postgres }` running `$name(Db)` on both.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Db::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::harness::Db::Postgres).await
                }
            }
        )*
    };
}
