//! Logging and tracing. Logs go to standard error as JSON lines (`LOG_FORMAT=json`, the
//! default in production) or as text (`pretty`), and also, with `LOG_FILE`, as JSON lines
//! to that file, rotated daily. Every line written while a request is handled carries the
//! request's span fields, its request id among them. With `OTEL_EXPORTER_OTLP_ENDPOINT`
//! the spans also go to an OpenTelemetry collector (see [`traces`]).

pub mod error_reports;
pub mod traces;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub use crate::config::{LogFormat, LogSettings};

/// Keeps the log file's writer thread and the span exporter alive; dropping it flushes
/// both (at the end of `main`).
pub struct TelemetryGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
    traces: Option<traces::TracesGuard>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(traces) = self.traces.take() {
            traces.shutdown();
        }
    }
}

/// Installs the global subscriber. What cannot be set up (a log directory that cannot be
/// made) is said on standard error and left out; the server still starts.
pub fn init(settings: &LogSettings) -> TelemetryGuard {
    // Standard error: standard output is for what a command produces (`events export`
    // writes JSON lines there, and a log line among them would corrupt the export).
    let stderr = match settings.format {
        LogFormat::Json => json_layer(std::io::stderr).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut file_guard = None;
    let file = settings
        .file
        .as_ref()
        .and_then(|path| match log_file(path) {
            Ok((writer, guard)) => {
                file_guard = Some(guard);
                Some(json_layer(writer).with_ansi(false).boxed())
            }
            Err(error) => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "LOG_FILE {}: {error}; logging to standard error only",
                        path.display()
                    );
                }
                None
            }
        });
    let (otel, traces) = match settings.otlp_endpoint.as_deref().map(traces::otlp) {
        Some(Ok((layer, guard))) => (Some(layer), Some(guard)),
        Some(Err(error)) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT: {error}; spans are not exported");
            }
            (None, None)
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(settings.filter())
        .with(stderr)
        .with(file)
        .with(otel)
        // Sends nothing until `SENTRY_DSN` binds a client (see `error_reports`).
        .with(sentry_tracing::layer())
        .try_init();
    TelemetryGuard {
        _file: file_guard,
        traces,
    }
}

/// One JSON object a line, with the fields of the current span and of every span around
/// it (the request span's `request_id` among them).
fn json_layer<S, W>(
    writer: W,
) -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
    W,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

fn log_file(
    path: &std::path::Path,
) -> Result<
    (
        tracing_appender::non_blocking::NonBlocking,
        tracing_appender::non_blocking::WorkerGuard,
    ),
    String,
> {
    let directory = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name().ok_or_else(|| "names no file".to_owned())?;
    std::fs::create_dir_all(directory).map_err(|e| e.to_string())?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(name.to_string_lossy())
        .build(directory)
        .map_err(|e| e.to_string())?;
    Ok(tracing_appender::non_blocking(appender))
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
