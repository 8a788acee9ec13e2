//! Logging, to standard error: `RUST_LOG` decides what is written; `DEBUG=true` raises the
//! default level.

use tracing_subscriber::EnvFilter;

/// Whether `DEBUG` asks for debug logging, read before (and apart from) the config, so the
/// log exists while the config is parsed. A value the config will refuse counts as off.
pub fn debug_requested() -> bool {
    std::env::var("DEBUG").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

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
        // Standard error: standard output is for what a command produces (`events export`
        // writes JSON lines there, and a log line among them would corrupt the export).
        .with_writer(std::io::stderr)
        .try_init();
}

/// An error with its sources, for a log line: typed errors keep their cause as a source
/// rather than in their own text.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
