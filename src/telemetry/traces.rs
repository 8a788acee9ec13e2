//! OpenTelemetry traces. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, every span goes to that
//! collector over OTLP/HTTP (protobuf, `<endpoint>/v1/traces`); unset, no exporter exists
//! and nothing connects.
//!
//! One trace follows a write across the pipeline: a request's span (continuing the
//! caller's W3C `traceparent`, if it sent one) → the command that appends its events, whose
//! context each event keeps in its metadata (`traceparent`) → the publisher's `publish`
//! span for that event, whose context rides on the NATS message as a `traceparent` header →
//! the projector's `project` span. Without NATS the in-process bus continues from the
//! metadata alike.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The metadata key and NATS header name of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Flushes and stops the exporter.
pub struct TracesGuard(SdkTracerProvider);

impl TracesGuard {
    pub fn shutdown(self) {
        if let Err(error) = self.0.shutdown() {
            tracing::warn!(%error, "spans not exported at shutdown");
        }
    }
}

/// A layer exporting to the OTLP/HTTP collector at `endpoint` (in batches, from a thread of
/// the SDK's own, so a slow or absent collector never holds a request up).
pub fn otlp<S>(
    endpoint: &str,
) -> Result<(Box<dyn Layer<S> + Send + Sync + 'static>, TracesGuard), String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_headers(HashMap::new())
        .build()
        .map_err(|e| e.to_string())?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("flowlytix").build())
        .build();
    Ok((layer(&provider).boxed(), TracesGuard(provider)))
}

/// Whether spans go anywhere but the log: set once a bridge to OpenTelemetry is built.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported. The spans made per event (publish, project: two to four
/// per event, six or more per activation) exist for traces alone; without an exporter they
/// only cost the log layer's field formatting, and are not made.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The `tracing` → OpenTelemetry bridge over `provider` (tests pass one with an in-memory
/// exporter), with W3C trace context as the way contexts travel.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_opentelemetry::layer().with_tracer(provider.tracer("flowlytix"))
}

/// The `traceparent` of the current span, when it belongs to a trace (only when a tracer is
/// installed).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the trace `traceparent` names; a missing or malformed one
/// leaves it the root of a trace of its own.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The `traceparent` an event's metadata carries, if any.
pub fn traceparent_in(metadata: &serde_json::Value) -> Option<&str> {
    metadata.get(TRACEPARENT).and_then(|v| v.as_str())
}
