//! The logs and trace spans of every in-process server of this test binary: the secret
//! scans read every line a server wrote, and the trace tests read the spans of the traces
//! they started.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Log lines of all servers in this process, for the "no secret in the logs" checks.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Spans of the traces that tests start themselves (a request with a sampled
/// `traceparent`), from the server's own tracing-to-OpenTelemetry layer, kept in memory.
static SPANS: OnceLock<opentelemetry_sdk::trace::InMemorySpanExporter> = OnceLock::new();

/// Installs the capture once per test binary; every app start calls it.
pub(super) fn capture_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CapturedWriter(buffer.clone());
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        // Only traces a test started are recorded: the other tests' spans cost nothing.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
                opentelemetry_sdk::trace::Sampler::AlwaysOff,
            )))
            .build();
        let _ = SPANS.set(exporter);
        let _ = tracing_subscriber::registry()
            // The server's own crates at trace level: the secret scans read every line
            // they can write.
            .with(tracing_subscriber::EnvFilter::new(
                "debug,flowlytix_server=trace,flowlytix_projections=trace,hyper=info,h2=info,rustls=info",
            ))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_ansi(false),
            )
            .with(flowlytix_server::telemetry::traces::layer(&provider))
            .try_init();
        // The provider lives as long as the test binary.
        std::mem::forget(provider);
        buffer
    });
}

/// Every span recorded so far of the trace `trace_id` (32 hex digits).
pub fn spans_of_trace(trace_id: &str) -> Vec<opentelemetry_sdk::trace::SpanData> {
    SPANS
        .get()
        .expect("spawn_app installs the span capture")
        .get_finished_spans()
        .unwrap_or_default()
        .into_iter()
        .filter(|span| span.span_context.trace_id().to_string() == trace_id)
        .collect()
}

pub fn captured_logs() -> String {
    let buffer = LOGS.get().expect("spawn_app installs the log capture");
    String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}
