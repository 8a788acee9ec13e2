#![allow(clippy::print_stdout)]
//! Load benchmark for a running Flowlytix server on this machine.
//!
//! Seeds subscriptions with activated devices through the admin and licensing APIs, then
//! measures, each for `--duration-secs` at `--concurrency` workers (after the server has
//! settled: read models caught up and its database quiet; then a short uncounted warm-up):
//!
//! - `GET /livez`: the HTTP ceiling (touches nothing);
//! - `POST /api/v1/licensing/validate` with random seeded (license key, fingerprint) pairs;
//! - `POST /api/v1/licensing/activate` of new fingerprints on subscriptions made for it;
//! - the database alone: point selects by key hash, through the server's own lookups (the
//!   event log: `store::Lookup::subscription_by_key_hash`; the read model:
//!   `read::licenses::subscription_id_by_key_hash`), and a single-row insert into a scratch
//!   table (dropped at the end) through sqlx.
//!
//! ```sh
//! cargo run --release -p flowlytix-bench -- --url http://127.0.0.1:8000 \
//!     --database-url postgres://postgres@127.0.0.1:5432/flowlytix \
//!     --admin-email admin@example.com --admin-password '...' \
//!     --subscriptions 200 --devices-per-subscription 3 --concurrency 32 --duration-secs 10
//! ```
//!
//! Only 127.0.0.1 targets are accepted. Every worker loops until the phase's deadline; a
//! request in flight at the deadline is awaited (each HTTP request times out after 30 s).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::Sha256Hex;
use flowlytix_server::crypto::sha256_hex;
use flowlytix_server::read::licenses::subscription_id_by_key_hash;
use flowlytix_server::store::{Db, Lookup};
use futures::StreamExt;
use reqwest::{Client, StatusCode, Url};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(about = "Benchmark a running Flowlytix server (127.0.0.1 only)")]
struct Args {
    /// Base URL of the server; its host must be 127.0.0.1.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// The server's database (for the raw database baselines); host must be 127.0.0.1.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "ADMIN_EMAIL")]
    admin_email: String,
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// Subscriptions to seed for validation.
    #[arg(long, default_value_t = 200)]
    subscriptions: usize,
    /// Devices activated on each seeded subscription.
    #[arg(long, default_value_t = 3)]
    devices_per_subscription: u32,
    /// Concurrent workers in every phase (and while seeding).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Uncounted warm-up before each phase (opens connections).
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// Before each phase, wait up to this long for the read models to catch up and the
    /// database to go quiet (0: do not wait).
    #[arg(long, default_value_t = 120)]
    settle_timeout_secs: u64,
    /// PID of the server process (on this machine): adds its CPU time per request, read
    /// from /proc, to the report.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Subscriptions (with a large max_devices) each activate worker spreads its new
    /// devices over; workers never share one, so activations do not contend.
    #[arg(long, default_value_t = 4)]
    activate_subscriptions_per_worker: usize,
    /// Which phases to run, comma-separated (default: all, in this order).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "livez,validate,activate,db-select-events,db-select-rm,db-insert"
    )]
    phases: Vec<PhaseKind>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PhaseKind {
    Livez,
    Validate,
    Activate,
    DbSelectEvents,
    DbSelectRm,
    DbInsert,
}

/// Device limit of the subscriptions the activate phase uses (the largest the API allows).
const ACTIVATE_MAX_DEVICES: u32 = 10_000;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn require_loopback(what: &str, raw: &str) -> Result<Url, BoxError> {
    let url = Url::parse(raw).map_err(|e| format!("{what}: {e}"))?;
    if url.host_str() != Some("127.0.0.1") {
        return Err(format!("{what} must point at 127.0.0.1 (got {:?})", url.host_str()).into());
    }
    Ok(url)
}

async fn run(args: Args) -> Result<(), BoxError> {
    if args.concurrency == 0 || args.duration_secs == 0 || args.subscriptions == 0 {
        return Err("--concurrency, --duration-secs and --subscriptions must be at least 1".into());
    }
    if args.devices_per_subscription == 0 || args.activate_subscriptions_per_worker == 0 {
        return Err(
            "--devices-per-subscription and --activate-subscriptions-per-worker must be at least 1"
                .into(),
        );
    }
    let base = require_loopback("--url", &args.url)?;
    require_loopback("--database-url", &args.database_url)?;
    let base = base.as_str().trim_end_matches('/').to_owned();
    let client = Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(args.concurrency)?)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&args.database_url)
        .await?;

    let health: Value = client
        .get(format!("{base}/health"))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "server {base}: version {}, bus {}, database {}",
        health["version"], health["bus"]["kind"], health["database"]
    );
    println!(
        "concurrency {}, {} s per phase (+{} s warm-up), {} subscriptions x {} devices",
        args.concurrency,
        args.duration_secs,
        args.warmup_secs,
        args.subscriptions,
        args.devices_per_subscription
    );

    let token = login(&client, &base, &args.admin_email, &args.admin_password).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let bench = Bench {
        client,
        base,
        token,
        run_id,
    };

    let seeded = seed(&bench, &args).await?;

    let result = measure_all(&bench, &pool, &args, &seeded).await;
    let dropped = sqlx::query("drop table if exists bench_scratch")
        .execute(&pool)
        .await;
    pool.close().await;
    let report = result?;
    dropped?;
    report.print();
    Ok(())
}

struct Bench {
    client: Client,
    base: String,
    token: String,
    run_id: String,
}

async fn login(
    client: &Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<String, BoxError> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status != StatusCode::OK {
        return Err(format!("admin login failed: {status} {body}").into());
    }
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "login answer has no access_token".into())
}

impl Bench {
    async fn create_subscription(&self, label: &str, max_devices: u32) -> Result<String, BoxError> {
        let response = self
            .client
            .post(format!("{}/api/v1/subscriptions", self.base))
            .bearer_auth(&self.token)
            .json(&json!({
                "customer_email": format!("bench-{}-{label}@example.com", self.run_id),
                "customer_name": format!("Bench {label}"),
                "plan": "pro",
                "max_devices": max_devices,
                "features": ["export", "sync"],
            }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != StatusCode::CREATED {
            return Err(format!("create subscription: {status} {body}").into());
        }
        body["license_key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "create subscription: no license_key in the answer".into())
    }

    async fn activate(&self, license_key: &str, fingerprint: &str) -> Result<(), BoxError> {
        let response = self
            .client
            .post(format!("{}/api/v1/licensing/activate", self.base))
            .json(&activate_body(license_key, fingerprint))
            .send()
            .await?;
        let status = response.status();
        if status != StatusCode::CREATED {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("activate: {status} {body}").into());
        }
        response.bytes().await?;
        Ok(())
    }
}

fn activate_body(license_key: &str, fingerprint: &str) -> Value {
    json!({
        "license_key": license_key,
        "device": {"fingerprint": fingerprint, "name": format!("bench {fingerprint}"), "platform": "linux"},
    })
}

struct Seeded {
    /// Pre-serialized validate bodies, one per seeded (key, fingerprint).
    validate_bodies: Vec<Bytes>,
    /// SHA-256 of each seeded key, as the server stores it.
    key_hashes: Vec<Sha256Hex>,
    /// Keys of the subscriptions the activate phase uses: worker `w` owns the entries
    /// `w, w + concurrency, w + 2 * concurrency, ...`.
    activate_keys: Vec<String>,
}

async fn seed(bench: &Bench, args: &Args) -> Result<Seeded, BoxError> {
    let started = Instant::now();
    let devices = args.devices_per_subscription;
    let results: Vec<Result<(String, Vec<String>), BoxError>> =
        futures::stream::iter(0..args.subscriptions)
            .map(|i| async move {
                let key = bench.create_subscription(&format!("s{i}"), devices).await?;
                let mut fingerprints = Vec::new();
                for d in 0..devices {
                    let fingerprint = format!("bench-{}-s{i}-d{d}", bench.run_id);
                    bench.activate(&key, &fingerprint).await?;
                    fingerprints.push(fingerprint);
                }
                Ok((key, fingerprints))
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
    let seeded_in = started.elapsed();
    let mut validate_bodies = Vec::new();
    let mut key_hashes = Vec::new();
    for result in results {
        let (key, fingerprints) = result?;
        let parsed = LicenseKey::parse(&key).map_err(|e| format!("seeded key: {e}"))?;
        key_hashes.push(sha256_hex(parsed.expose()));
        for fingerprint in fingerprints {
            let body = json!({"license_key": key, "fingerprint": fingerprint});
            validate_bodies.push(Bytes::from(serde_json::to_vec(&body)?));
        }
    }
    println!(
        "seeded {} subscriptions and {} activations in {:.2} s ({:.1} subscriptions/s)",
        args.subscriptions,
        validate_bodies.len(),
        seeded_in.as_secs_f64(),
        args.subscriptions as f64 / seeded_in.as_secs_f64()
    );

    let started = Instant::now();
    let count = if args.phases.contains(&PhaseKind::Activate) {
        args.concurrency * args.activate_subscriptions_per_worker
    } else {
        0
    };
    let results: Vec<Result<String, BoxError>> = futures::stream::iter(0..count)
        .map(|i| async move {
            bench
                .create_subscription(&format!("a{i}"), ACTIVATE_MAX_DEVICES)
                .await
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let activate_keys = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    println!(
        "created {count} subscriptions (max_devices {ACTIVATE_MAX_DEVICES}) for the activate phase in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        validate_bodies,
        key_hashes,
        activate_keys,
    })
}

/// Lets the server finish the work earlier phases left behind, so that a phase does not pay
/// for it: first until `/health` shows no projector lag (the read model then holds every
/// seeded subscription), then until no query runs in the server's database for a second
/// (the publisher, for instance, works through one wake-up per earlier commit).
async fn settle(ctx: &Ctx<'_>, name: &str) {
    let limit = Duration::from_secs(ctx.args.settle_timeout_secs);
    if limit.is_zero() {
        return;
    }
    let started = Instant::now();
    let mut lag = None;
    while started.elapsed() < limit {
        lag = projector_lag(ctx.bench).await;
        if lag == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = started.elapsed();
    let mut quiet_samples = 0;
    while quiet_samples < 10 && started.elapsed() < limit {
        let active: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and state = 'active' and pid <> pg_backend_pid()",
        )
        .fetch_one(ctx.pool)
        .await;
        quiet_samples = if matches!(active, Ok(0)) {
            quiet_samples + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quiet = quiet_samples >= 10;
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

/// Events not yet applied, summed over the projectors `/health` lists.
async fn projector_lag(bench: &Bench) -> Option<i64> {
    let health: Value = bench
        .client
        .get(format!("{}/health", bench.base))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let projectors = health["projectors"].as_array()?;
    Some(
        projectors
            .iter()
            .map(|p| p["lag"].as_i64().unwrap_or(0))
            .sum(),
    )
}

/// A tiny stateless generator: splitmix64.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick(len: usize, worker: usize, iteration: u64) -> usize {
    (mix(((worker as u64) << 40) ^ iteration) % len as u64) as usize
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    /// Latency of every request, errors included, in microseconds, sorted.
    latencies: Vec<u64>,
    errors: u64,
    elapsed: Duration,
    error_kinds: BTreeMap<String, u64>,
    /// CPU time the server and this process used during the measured run (Linux only).
    server_cpu: Option<Duration>,
    bench_cpu: Option<Duration>,
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat` (in USER_HZ = 100 ticks).
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with field 3, `state`;
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_per_request_us(cpu: Option<Duration>, requests: usize) -> String {
    match cpu {
        Some(cpu) if requests > 0 => format!("{:.1}", cpu.as_secs_f64() * 1e6 / requests as f64),
        _ => "-".to_owned(),
    }
}

impl Phase {
    fn requests(&self) -> usize {
        self.latencies.len()
    }

    fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank =
            ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// Runs `op` in `concurrency` tasks, each looping until `duration` has passed. `op` gets
/// the worker index and the worker's iteration count; an `Err` is counted as an error
/// with its text as the kind.
async fn measure<F, Fut>(
    name: &'static str,
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
        latencies,
        errors,
        elapsed,
        error_kinds,
        server_cpu: None,
        bench_cpu: None,
    })
}

/// A warm-up run (discarded), then the measured run.
async fn phase<F, Fut>(name: &'static str, ctx: &Ctx<'_>, op: F) -> Result<Phase, BoxError>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let args = ctx.args;
    settle(ctx, name).await;
    if args.warmup_secs > 0 {
        measure(
            name,
            args.concurrency,
            Duration::from_secs(args.warmup_secs),
            op.clone(),
        )
        .await?;
    }
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let server_before = server_pid.as_deref().and_then(process_cpu);
    let bench_before = process_cpu("self");
    let mut measured = measure(
        name,
        args.concurrency,
        Duration::from_secs(args.duration_secs),
        op,
    )
    .await?;
    let server_after = server_pid.as_deref().and_then(process_cpu);
    measured.server_cpu = server_before
        .zip(server_after)
        .map(|(a, b)| b.saturating_sub(a));
    measured.bench_cpu = bench_before
        .zip(process_cpu("self"))
        .map(|(a, b)| b.saturating_sub(a));
    println!(
        "  {name}: {} requests, {} errors",
        measured.requests(),
        measured.errors
    );
    Ok(measured)
}

/// Reads the whole body (so the connection goes back to the pool) and checks the status.
async fn finish(
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
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("HTTP {} {code}", status.as_u16()));
    }
    Ok(body)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What every phase needs besides its own operation.
struct Ctx<'a> {
    args: &'a Args,
    bench: &'a Bench,
    pool: &'a PgPool,
}

struct Report {
    phases: Vec<Phase>,
}

async fn measure_all(
    bench: &Bench,
    pool: &PgPool,
    args: &Args,
    seeded: &Seeded,
) -> Result<Report, BoxError> {
    let concurrency = args.concurrency;
    let ctx = Ctx { args, bench, pool };
    println!("measuring:");
    let mut phases = Vec::new();

    let wants = |kind: PhaseKind| args.phases.contains(&kind);

    if wants(PhaseKind::Livez) {
        let client = bench.client.clone();
        let url = Arc::new(format!("{}/livez", bench.base));
        phases.push(
            phase("GET /livez", &ctx, move |_, _| {
                let request = client.get(url.as_str()).send();
                async move { finish(request.await, StatusCode::OK).await.map(drop) }
            })
            .await?,
        );
    }

    if wants(PhaseKind::Validate) {
        let client = bench.client.clone();
        let url = Arc::new(format!("{}/api/v1/licensing/validate", bench.base));
        let bodies = Arc::new(seeded.validate_bodies.clone());
        phases.push(
            phase("POST validate", &ctx, move |worker, i| {
                let body = bodies[pick(bodies.len(), worker, i)].clone();
                let request = client
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send();
                async move {
                    let body = finish(request.await, StatusCode::OK).await?;
                    if contains(&body, br#""valid":true"#) {
                        Ok(())
                    } else {
                        let code = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|b| b["code"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        Err(format!("not valid: {code}"))
                    }
                }
            })
            .await?,
        );
    }

    if wants(PhaseKind::Activate) {
        let client = bench.client.clone();
        let url = Arc::new(format!("{}/api/v1/licensing/activate", bench.base));
        let keys = Arc::new(seeded.activate_keys.clone());
        let per_worker = args.activate_subscriptions_per_worker as u64;
        let sequence = Arc::new(AtomicU64::new(0));
        let run_id = Arc::new(bench.run_id.clone());
        phases.push(
            phase("POST activate", &ctx, move |worker, i| {
                let key = &keys[worker + concurrency * (i % per_worker) as usize];
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let fingerprint = format!("bench-{run_id}-new-{n}");
                let request = client
                    .post(url.as_str())
                    .json(&activate_body(key, &fingerprint))
                    .send();
                async move { finish(request.await, StatusCode::CREATED).await.map(drop) }
            })
            .await?,
        );
    }

    let hashes = Arc::new(seeded.key_hashes.clone());
    if wants(PhaseKind::DbSelectEvents) {
        // The server's own event-log lookup (what validate and activate use to find a key).
        let lookup = Lookup::new(Db::Postgres(pool.clone()));
        let h = hashes.clone();
        phases.push(
            phase("DB select events by key", &ctx, move |worker, i| {
                let lookup = lookup.clone();
                let h = h.clone();
                let index = pick(h.len(), worker, i);
                async move {
                    let id = lookup
                        .subscription_by_key_hash(&h[index])
                        .await
                        .map_err(|e| format!("database: {e}"))?;
                    id.map(drop).ok_or_else(|| "key hash not found".to_owned())
                }
            })
            .await?,
        );
    }

    if wants(PhaseKind::DbSelectRm) {
        // The server's own read-model lookup.
        let db = Db::Postgres(pool.clone());
        phases.push(
            phase("DB select rm_subscriptions", &ctx, move |worker, i| {
                let db = db.clone();
                let hashes = hashes.clone();
                let index = pick(hashes.len(), worker, i);
                async move {
                    let id = subscription_id_by_key_hash(&db, &hashes[index])
                        .await
                        .map_err(|e| format!("database: {e}"))?;
                    id.map(drop).ok_or_else(|| "key hash not found".to_owned())
                }
            })
            .await?,
        );
    }

    if wants(PhaseKind::DbInsert) {
        sqlx::query("create table if not exists bench_scratch (id bigserial primary key, payload json not null)")
        .execute(pool)
        .await?;
        let db = pool.clone();
        phases.push(
            phase("DB insert scratch row", &ctx, move |worker, i| {
                let db = db.clone();
                let payload = json!({"worker": worker, "i": i, "fingerprint_hash": "0".repeat(64)})
                    .to_string();
                async move {
                    sqlx::query("insert into bench_scratch (payload) values ($1::json)")
                        .bind(payload)
                        .execute(&db)
                        .await
                        .map(drop)
                        .map_err(|e| format!("database: {e}"))
                }
            })
            .await?,
        );
    }

    Ok(Report { phases })
}

impl Report {
    fn throughput(&self, name: &str) -> f64 {
        self.phases
            .iter()
            .find(|p| p.name == name)
            .map_or(0.0, Phase::throughput)
    }

    fn print(&self) {
        println!();
        println!(
            "{:<28} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7}",
            "phase", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
        );
        for p in &self.phases {
            println!(
                "{:<28} {:>9} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                p.name,
                p.requests(),
                p.throughput(),
                p.percentile_ms(0.50),
                p.percentile_ms(0.99),
                p.max_ms(),
                p.errors
            );
        }
        println!();
        println!(
            "{:<28} {:>14} {:>14}",
            "CPU per request (us)", "server", "bench"
        );
        for p in &self.phases {
            println!(
                "{:<28} {:>14} {:>14}",
                p.name,
                cpu_per_request_us(p.server_cpu, p.requests()),
                cpu_per_request_us(p.bench_cpu, p.requests())
            );
        }
        for p in &self.phases {
            for (kind, n) in &p.error_kinds {
                println!("  {} error: {kind} x{n}", p.name);
            }
        }
        let ratio = |a: &str, b: &str| {
            let below = self.throughput(b);
            if below > 0.0 {
                self.throughput(a) / below
            } else {
                0.0
            }
        };
        println!();
        println!(
            "{:<44} {:>6.3}",
            "validate / livez",
            ratio("POST validate", "GET /livez")
        );
        println!(
            "{:<44} {:>6.3}",
            "activate / livez",
            ratio("POST activate", "GET /livez")
        );
        println!(
            "{:<44} {:>6.3}",
            "validate / DB select rm_subscriptions",
            ratio("POST validate", "DB select rm_subscriptions")
        );
        println!(
            "{:<44} {:>6.3}",
            "validate / DB select events by key",
            ratio("POST validate", "DB select events by key")
        );
        println!(
            "{:<44} {:>6.3}",
            "activate / DB insert scratch row",
            ratio("POST activate", "DB insert scratch row")
        );
    }
}
