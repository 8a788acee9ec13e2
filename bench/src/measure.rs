//! Running a phase: workers looping until a deadline, their latencies, errors and the CPU
//! the server and the bench used meanwhile.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;

use crate::api::Bench;
use crate::baseline::Baseline;
use crate::{machine, Args, BoxError};

/// What every phase needs besides its own operation.
pub struct Ctx<'a> {
    pub args: &'a Args,
    pub bench: &'a Bench,
    pub baseline: &'a Baseline,
}

/// What one phase measured.
pub struct Phase {
    pub name: &'static str,
    /// The phase's name in `--json` output.
    pub key: &'static str,
    /// Latency of every request, errors included, in microseconds, sorted.
    pub latencies: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
    pub error_kinds: BTreeMap<String, u64>,
    /// CPU time the server and this process used during the measured run (Linux only).
    pub server_cpu: Option<Duration>,
    pub bench_cpu: Option<Duration>,
}

impl Phase {
    pub fn requests(&self) -> usize {
        self.latencies.len()
    }

    pub fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies, p)
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    }

    /// Server CPU time per request, in microseconds.
    pub fn server_cpu_us(&self) -> Option<f64> {
        cpu_per_request_us(self.server_cpu, self.requests())
    }

    pub fn bench_cpu_us(&self) -> Option<f64> {
        cpu_per_request_us(self.bench_cpu, self.requests())
    }
}

/// The `p` quantile (nearest rank) of sorted microsecond samples, in milliseconds.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

fn cpu_per_request_us(cpu: Option<Duration>, requests: usize) -> Option<f64> {
    match cpu {
        Some(cpu) if requests > 0 => Some(cpu.as_secs_f64() * 1e6 / requests as f64),
        _ => None,
    }
}

/// Runs `op` in `concurrency` tasks, each looping until `duration` has passed. `op` gets
/// the worker index and the worker's iteration count; an `Err` is counted as an error
/// with its text as the kind.
pub async fn measure<F, Fut>(
    name: &'static str,
    key: &'static str,
    concurrency: usize,
    duration: Duration,
    op: F,
) -> Result<Phase, BoxError>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut errors = 0u64;
            let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
            let mut iteration = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let outcome = op(worker, iteration).await;
                latencies.push(sent.elapsed().as_micros() as u64);
                if let Err(kind) = outcome {
                    errors += 1;
                    if kinds.len() < 20 || kinds.contains_key(&kind) {
                        *kinds.entry(kind).or_default() += 1;
                    }
                }
                iteration += 1;
            }
            (latencies, errors, kinds)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let (l, e, k) = task.await?;
        latencies.extend(l);
        errors += e;
        for (kind, n) in k {
            *error_kinds.entry(kind).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Phase {
        name,
        key,
        latencies,
        errors,
        elapsed,
        error_kinds,
        server_cpu: None,
        bench_cpu: None,
    })
}

/// Settles the server, then runs an uncounted warm-up (opens connections).
pub async fn prepare<F, Fut>(
    name: &'static str,
    key: &'static str,
    ctx: &Ctx<'_>,
    op: F,
) -> Result<(), BoxError>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let args = ctx.args;
    settle(ctx, name).await;
    if args.warmup_secs > 0 {
        measure(
            name,
            key,
            args.concurrency,
            Duration::from_secs(args.warmup_secs),
            op,
        )
        .await?;
    }
    Ok(())
}

/// The measured run, with the CPU time the server and the bench spent meanwhile.
pub async fn measured<F, Fut>(
    name: &'static str,
    key: &'static str,
    ctx: &Ctx<'_>,
    op: F,
) -> Result<Phase, BoxError>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let args = ctx.args;
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let server_before = server_pid.as_deref().and_then(machine::process_cpu);
    let bench_before = machine::process_cpu("self");
    let mut phase = measure(
        name,
        key,
        args.concurrency,
        Duration::from_secs(args.duration_secs),
        op,
    )
    .await?;
    let server_after = server_pid.as_deref().and_then(machine::process_cpu);
    phase.server_cpu = server_before
        .zip(server_after)
        .map(|(a, b)| b.saturating_sub(a));
    phase.bench_cpu = bench_before
        .zip(machine::process_cpu("self"))
        .map(|(a, b)| b.saturating_sub(a));
    println!(
        "  {name}: {} requests, {} errors",
        phase.requests(),
        phase.errors
    );
    Ok(phase)
}

/// Settle, warm up (discarded), then the measured run.
pub async fn phase<F, Fut>(
    name: &'static str,
    key: &'static str,
    ctx: &Ctx<'_>,
    op: F,
) -> Result<Phase, BoxError>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    prepare(name, key, ctx, op.clone()).await?;
    measured(name, key, ctx, op).await
}

/// Lets the server finish the work earlier phases left behind, so that a phase does not pay
/// for it: first until `/health` shows no projector lag (the read model then holds every
/// seeded subscription), then, on PostgreSQL, until no query runs in the server's database
/// for a second (the publisher, for instance, works through one wake-up per earlier commit).
pub async fn settle(ctx: &Ctx<'_>, name: &str) {
    let limit = Duration::from_secs(ctx.args.settle_timeout_secs);
    if limit.is_zero() {
        return;
    }
    let started = Instant::now();
    let mut lag = None;
    while started.elapsed() < limit {
        lag = ctx.bench.projector_lag().await;
        if lag == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = started.elapsed();
    let quiet = ctx.baseline.wait_quiet(limit, started).await;
    println!(
        "  settled before {name}: read models {} after {:.1} s, database {} after {:.1} s",
        if lag == Some(0) {
            "caught up"
        } else {
            "STILL LAGGING"
        },
        caught_up.as_secs_f64(),
        if quiet { "quiet" } else { "STILL BUSY" },
        started.elapsed().as_secs_f64(),
    );
}

/// A tiny stateless generator: splitmix64.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn pick(len: usize, worker: usize, iteration: u64) -> usize {
    (mix(((worker as u64) << 40) ^ iteration) % len as u64) as usize
}

/// Reads the whole body (so the connection goes back to the pool) and checks the status.
pub async fn finish(
    response: Result<reqwest::Response, reqwest::Error>,
    expected: StatusCode,
) -> Result<Bytes, String> {
    let response = response.map_err(|e| format!("transport: {}", error_chain(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading body: {}", error_chain(&e)))?;
    if status != expected {
        return Err(format!("HTTP {} {}", status.as_u16(), problem_code(&body)));
    }
    Ok(body)
}

/// The `code` of a JSON answer (a problem, or a validation verdict), or nothing.
pub fn problem_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
