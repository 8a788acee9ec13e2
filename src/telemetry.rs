//! Logging, to standard error: `RUST_LOG` decides what is written; `DEBUG=true` raises the
//! default level.

use tracing_subscriber::EnvFilter;

pub fn init(debug: bool) {
    let default = if debug {
        "debug,sqlx=info,hyper=info"
    } else {
        "info,sqlx=warn,tower_http=info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Standard error: standard output is for what a command produces (`events export`
    // writes JSON lines there, and a log line among them would corrupt the export).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
