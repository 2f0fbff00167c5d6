//! `jupyterhub-credit-service`: reads the config, sets up logging, runs.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use credit_service::Config;
use credit_service::config::LogFormat;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let filter = match EnvFilter::try_new(&config.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "error: invalid value {:?} for '--log-level' (CREDIT_SERVICE_LOG_LEVEL): {e}",
                config.log_level
            );
            return std::process::ExitCode::from(2);
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match credit_service::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
