//! The service's configuration: command-line flags with the environment
//! variables JupyterHub gives a managed service as fallbacks. A wrong value
//! stops the service at start with a message naming the flag and the value.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use url::Url;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything the service can be told at start.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "jupyterhub-credit-service",
    version,
    about = "Credit quotas for JupyterHub: bills running servers, stops the unpaid, serves the credits API.",
    long_about = None
)]
pub struct Config {
    /// The hub's REST API, e.g. http://127.0.0.1:8081/hub/api/.
    #[arg(long, env = "JUPYTERHUB_API_URL", value_parser = parse_base_url)]
    pub hub_api_url: Url,

    /// This service's API token, as registered with the hub.
    #[arg(long, env = "JUPYTERHUB_API_TOKEN", hide_env_values = true)]
    pub api_token: String,

    /// Where this service listens, e.g. http://127.0.0.1:10101.
    #[arg(
        long,
        env = "JUPYTERHUB_SERVICE_URL",
        default_value = "http://127.0.0.1:10101",
        value_parser = parse_listen_url
    )]
    pub service_url: SocketAddr,

    /// The URL prefix the proxy forwards to this service.
    #[arg(
        long,
        env = "JUPYTERHUB_SERVICE_PREFIX",
        default_value = "/services/credits/",
        value_parser = parse_prefix
    )]
    pub service_prefix: String,

    /// The hub's base URL, for links and the login redirect.
    #[arg(long, env = "JUPYTERHUB_BASE_URL", default_value = "/", value_parser = parse_prefix)]
    pub base_url: String,

    /// The public origin of the hub when it differs from this page's (empty: same origin).
    #[arg(long, env = "JUPYTERHUB_HOST", default_value = "")]
    pub hub_host: String,

    /// OAuth client id of this service (set by the hub for managed services).
    #[arg(long, env = "JUPYTERHUB_CLIENT_ID")]
    pub oauth_client_id: Option<String>,

    /// OAuth redirect URI registered for this service.
    #[arg(long, env = "JUPYTERHUB_OAUTH_CALLBACK_URL")]
    pub oauth_callback_url: Option<String>,

    /// The ledger's database: sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "CREDIT_SERVICE_DATABASE_URL",
        default_value = "sqlite://jupyterhub_credits.sqlite",
        value_parser = parse_database_url
    )]
    pub database_url: String,

    /// Seconds between billing rounds.
    #[arg(
        long = "round-interval",
        env = "CREDIT_SERVICE_ROUND_INTERVAL",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub round_interval_secs: u64,

    /// Seconds between full listings of the hub's ready servers; in between,
    /// the hub plugin's notices keep the ledger current.
    #[arg(
        long = "reconcile-interval",
        env = "CREDIT_SERVICE_RECONCILE_INTERVAL",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub reconcile_interval_secs: u64,

    /// Shared secret of the hub plugin; without it the plugin endpoints refuse every call.
    #[arg(long, env = "CREDIT_SERVICE_PLUGIN_SECRET", hide_env_values = true)]
    pub plugin_secret: Option<String>,

    /// Seconds a hub token's identity is cached.
    #[arg(
        long = "auth-cache",
        env = "CREDIT_SERVICE_AUTH_CACHE",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub auth_cache_secs: u64,

    /// Log format.
    #[arg(long, env = "CREDIT_SERVICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. info or credit_service=debug.
    #[arg(long, env = "CREDIT_SERVICE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Exit when the process that started this one (the hub) is gone.
    #[arg(long, env = "CREDIT_SERVICE_EXIT_WITH_PARENT", default_value_t = false)]
    pub exit_with_parent: bool,
}

impl Config {
    /// Seconds between rounds as a duration.
    pub fn round_interval(&self) -> Duration {
        Duration::from_secs(self.round_interval_secs)
    }

    /// The service prefix without its trailing slash ("" at the root).
    pub fn prefix_path(&self) -> &str {
        self.service_prefix.trim_end_matches('/')
    }
}

fn parse_base_url(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} must be an http or https URL"));
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

fn parse_listen_url(text: &str) -> Result<SocketAddr, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "{text:?}: the service serves plain http behind the proxy; use http://HOST:PORT"
        ));
    }
    let addrs = url
        .socket_addrs(|| Some(80))
        .map_err(|e| format!("{text:?} has no address to listen on: {e}"))?;
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{text:?} has no address to listen on"))
}

fn parse_prefix(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?} must start with '/'"));
    }
    if text.contains(['?', '#', ' ']) {
        return Err(format!("{text:?} must be a plain URL path"));
    }
    Ok(if text.ends_with('/') {
        text.to_string()
    } else {
        format!("{text}/")
    })
}

fn parse_database_url(text: &str) -> Result<String, String> {
    if text.starts_with("sqlite:")
        || text.starts_with("postgres://")
        || text.starts_with("postgresql://")
    {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a supported database URL; use sqlite://PATH or postgres://USER@HOST/DB"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut all = vec![
            "jupyterhub-credit-service",
            "--hub-api-url",
            "http://127.0.0.1:8081/hub/api",
            "--api-token",
            "t",
        ];
        all.extend_from_slice(args);
        Config::try_parse_from(all).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_usable() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.hub_api_url.as_str(), "http://127.0.0.1:8081/hub/api/");
        assert_eq!(c.service_prefix, "/services/credits/");
        assert_eq!(c.prefix_path(), "/services/credits");
        assert_eq!(c.round_interval_secs, 60);
        assert_eq!(c.service_url.port(), 10101);
    }

    #[test]
    fn wrong_values_name_the_flag_and_value() {
        let err = parse(&["--round-interval", "0"]).unwrap_err();
        assert!(
            err.contains("--round-interval") && err.contains("'0'"),
            "{err}"
        );
        let err = parse(&["--round-interval", "abc"]).unwrap_err();
        assert!(
            err.contains("--round-interval") && err.contains("'abc'"),
            "{err}"
        );
        let err = parse(&["--database-url", "mysql://x"]).unwrap_err();
        assert!(
            err.contains("--database-url") && err.contains("mysql://x"),
            "{err}"
        );
        let err = parse(&["--log-format", "xml"]).unwrap_err();
        assert!(err.contains("--log-format") && err.contains("xml"), "{err}");
        let err = parse(&["--service-url", "https://0.0.0.0:1"]).unwrap_err();
        assert!(err.contains("--service-url"), "{err}");
    }
}
