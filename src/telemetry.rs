//! Logging: `RUST_LOG` decides what is written; `DEBUG=true` raises the default level.

use tracing_subscriber::EnvFilter;

pub fn init(debug: bool) {
    let default = if debug {
        "debug,sqlx=info,hyper=info"
    } else {
        "info,sqlx=warn,tower_http=info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
