use clap::Parser;
use flowlytix_server::cli::{self, Cli};
use flowlytix_server::{telemetry, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            telemetry::init(false);
            tracing::error!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    telemetry::init(config.debug);
    match cli::run(cli, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}
