use clap::Parser;
use flowlytix_server::cli::{self, Cli};
use flowlytix_server::{telemetry, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Logging first, so that what parsing the config has to say is logged. Only the level
    // comes from the environment here (`.env` included); the rest of the config follows.
    let _ = dotenvy::dotenv();
    telemetry::init(telemetry::debug_requested());
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match cli::run(cli, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{}", telemetry::error_chain(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
