//! How far the read side is behind the writes: the projection lag while the activate phase
//! runs, and the time it takes to catch up once it ends.
//!
//! Lag is sampled from the client's side: every `--lag-sample-ms` the newest activation
//! answered so far is taken, and `GET /api/v1/devices?min_position=<its position>` (which
//! waits server-side, polling every 20 ms for up to 5 s) is asked for it; the lag is the
//! time from the activation's answer to the list's answer. A list that gave up waiting
//! (`x-read-model-consistent: false`) counts with the time it took (about 5 s, a lower
//! bound) and is counted apart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::Bench;
use crate::measure::{error_chain, percentile_ms};

/// An answered command: the event-log position it reached, which subscription it changed,
/// and when its answer arrived.
pub struct Written {
    pub position: i64,
    pub subscription_id: String,
    pub at: Instant,
}

/// The newest answered command, overwritten by every answer.
#[derive(Default)]
pub struct Newest(Mutex<Option<Written>>);

impl Newest {
    /// Records an activation's answer (its body).
    pub fn record(&self, body: &[u8], at: Instant) {
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let (Some(position), Some(subscription_id)) = (
            body["position"].as_i64(),
            body["license"]["subscription_id"].as_str(),
        ) else {
            return;
        };
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(Written {
                position,
                subscription_id: subscription_id.to_owned(),
                at,
            });
        }
    }

    fn take(&self) -> Option<Written> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// What the lag samples came to.
pub struct LagFigures {
    /// Lag of each sample, in microseconds, sorted.
    pub samples_us: Vec<u64>,
    /// Samples whose list gave up waiting (the read model was 5 s or more behind).
    pub gave_up: usize,
    /// Samples whose list failed (transport error or an unexpected status).
    pub errors: usize,
}

impl LagFigures {
    pub fn p50_ms(&self) -> f64 {
        percentile_ms(&self.samples_us, 0.50)
    }

    pub fn p99_ms(&self) -> f64 {
        percentile_ms(&self.samples_us, 0.99)
    }

    pub fn max_ms(&self) -> f64 {
        self.samples_us.last().copied().unwrap_or(0) as f64 / 1000.0
    }
}

enum Sample {
    Lag { lag: Duration, consistent: bool },
    Failed(String),
}

/// A running sampler; `stop` ends it and gathers its samples.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<JoinHandle<Sample>>>,
}

impl Sampler {
    /// Starts sampling what `newest` holds every `every`, from now on (older entries are
    /// dropped first).
    pub fn start(bench: &Bench, newest: Arc<Newest>, every: Duration) -> Self {
        newest.take();
        let (stop, mut stopped) = watch::channel(false);
        let client = bench.client.clone();
        let url = format!("{}/api/v1/devices", bench.base);
        let token = bench.token.clone();
        let task = tokio::spawn(async move {
            let mut probes = Vec::new();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                let Some(written) = newest.take() else {
                    continue;
                };
                // Each probe on its own task: a slow one must not delay the next sample.
                let request = client
                    .get(&url)
                    .bearer_auth(&token)
                    .query(&[
                        ("min_position", written.position.to_string()),
                        ("subscription_id", written.subscription_id),
                        ("per_page", "1".to_owned()),
                    ])
                    .send();
                probes.push(tokio::spawn(async move {
                    let response = match request.await {
                        Ok(response) => response,
                        Err(error) => return Sample::Failed(error_chain(&error)),
                    };
                    let status = response.status();
                    let consistent = response
                        .headers()
                        .get("x-read-model-consistent")
                        .is_none_or(|v| v.as_bytes() != b"false");
                    let _ = response.bytes().await;
                    if status != StatusCode::OK {
                        return Sample::Failed(format!("HTTP {}", status.as_u16()));
                    }
                    Sample::Lag {
                        lag: written.at.elapsed(),
                        consistent,
                    }
                }));
            }
            probes
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> LagFigures {
        let _ = self.stop.send(true);
        let probes = self.task.await.unwrap_or_default();
        let mut figures = LagFigures {
            samples_us: Vec::with_capacity(probes.len()),
            gave_up: 0,
            errors: 0,
        };
        for probe in probes {
            match probe.await {
                Ok(Sample::Lag { lag, consistent }) => {
                    figures.samples_us.push(lag.as_micros() as u64);
                    if !consistent {
                        figures.gave_up += 1;
                    }
                }
                Ok(Sample::Failed(why)) => {
                    if figures.errors == 0 {
                        println!("  lag sample failed: {why}");
                    }
                    figures.errors += 1;
                }
                Err(_) => figures.errors += 1,
            }
        }
        figures.samples_us.sort_unstable();
        figures
    }
}

/// Seconds from `since` until `/health` shows every projector with lag 0; `None` if that
/// did not happen within `limit`.
pub async fn catch_up(bench: &Bench, since: Instant, limit: Duration) -> Option<f64> {
    loop {
        if bench.projector_lag().await == Some(0) {
            return Some(since.elapsed().as_secs_f64());
        }
        if since.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
