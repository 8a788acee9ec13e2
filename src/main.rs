use clap::Parser;
use flowlytix_server::cli::{self, Cli};
use flowlytix_server::telemetry::{self, LogSettings};
use flowlytix_server::Config;

/// mimalloc rather than glibc's allocator: a request allocates and frees many small
/// buffers, and glibc's malloc/free/consolidate took about a quarter of an activation's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Logging first, so that what parsing the config has to say is logged. Only the log
    // settings come from the environment here (`.env` included); the rest of the config
    // follows, and refuses bad log settings by name.
    let _ = dotenvy::dotenv();
    // A bad LOG_* value is refused by name just below, by `Config::from_env`.
    let settings = LogSettings::from_env().unwrap_or_default();
    // Flushes the log file and the span exporter when `main` returns.
    let _telemetry = telemetry::init(&settings);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let serves = cli::Command::serves(cli.command.as_ref());
    match cli::run(cli, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) if serves => {
            tracing::error!("{}", telemetry::error_chain(&error));
            std::process::ExitCode::FAILURE
        }
        // A one-off command's operator reads a terminal: plain text, whatever LOG_FORMAT.
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("flowlytix: {}", telemetry::error_chain(&error));
            }
            std::process::ExitCode::FAILURE
        }
    }
}
