//! Prometheus metrics: one process-wide recorder (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus` from our own `/metrics` route), the named recording
//! functions the rest of the server calls (`record`), the HTTP middleware (`http`) and the
//! figures read afresh at each scrape (`sampled`).
//!
//! Names follow Prometheus conventions: `flowlytix_` prefix, `_total` counters, base units
//! (`_seconds`, `_bytes`), labels with a small fixed set of values (route templates, never
//! raw paths; result codes, never ids or credentials).

pub mod http;
pub mod record;
pub mod sampled;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: from a cache hit to a slow command under load.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Events per projector batch (`PROJECTION_BATCH_SIZE` is at most 5000).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
];

/// The recorder is global to the process, and one process may run several apps (the
/// integration tests do): it is installed once, by whichever app starts first.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder if no app of this process has yet, and describes every metric.
pub fn install() {
    HANDLE.get_or_init(|| {
        let built = PrometheusBuilder::new()
            .set_buckets(SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(record::PROJECTOR_BATCH.into()), BATCH_BUCKETS)
            })
            .and_then(PrometheusBuilder::install_recorder);
        match built {
            Ok(handle) => {
                record::describe();
                sampled::describe();
                Some(handle)
            }
            Err(error) => {
                // Another recorder is in place (an embedding program's): metrics go there.
                tracing::warn!(%error, "cannot install the Prometheus recorder; /metrics will be empty");
                None
            }
        }
    });
}

/// Folds recent histogram samples into their buckets; the server calls it every few
/// seconds, and before each render.
fn upkeep() {
    if let Some(handle) = HANDLE.get().and_then(Option::as_ref) {
        handle.run_upkeep();
    }
}

/// Runs `upkeep` every few seconds until `shutdown` flips, so histograms stay small between
/// scrapes (or without any).
pub async fn run_upkeep(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = every.tick() => upkeep(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Everything recorded so far, in the Prometheus text format.
pub fn render() -> String {
    match HANDLE.get().and_then(Option::as_ref) {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}
