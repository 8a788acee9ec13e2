#![allow(clippy::print_stdout)]
//! Load benchmark for a running Flowlytix server on this machine.
//!
//! Seeds subscriptions with activated devices (through the admin and licensing APIs, or with
//! `--seed-mode direct` in-process through the server library's own command runner, fast
//! enough for 100 000 subscriptions), then measures, each for `--duration-secs` at
//! `--concurrency` workers (after the server has settled: read models caught up and, on
//! PostgreSQL, its database quiet; then a short uncounted warm-up):
//!
//! - `GET /livez`: the HTTP ceiling (touches nothing);
//! - `POST /api/v1/licensing/validate` with random seeded (license key, fingerprint) pairs;
//! - `access-log`: livez and validate again on a server with `ACCESS_LOG=true` and on one
//!   with it `false` (each started for the purpose on the same database, with this
//!   process's environment), for validate ÷ livez with the access log on and off;
//! - `POST /api/v1/licensing/activate` of new fingerprints on subscriptions made for it,
//!   with the projection lag sampled meanwhile and the read models' catch-up time after it
//!   (`lag`);
//! - `activate-history`: re-activation on a subscription with `--history-events` prior
//!   events against the same on a fresh one (`history`);
//! - the database alone: point selects by key hash, through the server's own lookups (the
//!   event log: `store::Lookup::subscription_by_key_hash`; the read model:
//!   `read::licenses::subscription_id_by_key_hash`), and a single-row insert into a scratch
//!   table (dropped at the end) through sqlx;
//! - `replay`: the server binary's `flowlytix replay` on the same database, online (`replay`);
//! - after all of these, on a set of their own (a policy made for the run and
//!   `--subscriptions` subscriptions that follow it) and on a second server started for them
//!   (`policy`): `validate-policy`, validation of the followers' licenses beside `/livez` and
//!   the plain validate set on that server, and `policy-propagation`, the time a policy change
//!   takes to reach another instance's validation;
//! - last, on a set of their own (a policy with heartbeats every ten minutes and
//!   `--heartbeat-subscriptions` subscriptions that follow it, one device each) and on the
//!   measured server (`heartbeat`): `heartbeat`, `POST /api/v1/licensing/heartbeat` beside
//!   `validate` by the same devices' tokens, with the events table counted around it; and
//!   `lease-culler`, the culler's query and one pass at `--culler-leases` live leases of
//!   which `--culler-due` are due (`culler`).
//!
//! With `--server-pid` it adds the server's CPU time per request and its memory (RSS once
//! the seeding is projected, and at the end). `--json FILE` writes every figure, with the
//! date and the machine. `scripts/bench` runs all of it on both backends from fresh
//! databases.
//!
//! The database is the server's: PostgreSQL (`postgres://…`) or its embedded SQLite file
//! (`sqlite://path`).
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

mod access_log;
mod api;
mod baseline;
mod culler;
mod direct;
mod heartbeat;
mod history;
mod json;
mod lag;
mod machine;
mod measure;
mod phases;
mod policy;
mod replay;
mod report;
mod seed;

use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::{Client, Url};

use crate::api::Bench;
use crate::baseline::Baseline;
use crate::measure::{settle, Ctx};
use crate::report::{HistoryEvents, Report, RunInfo};
use crate::seed::Seeded;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark a running Flowlytix server (127.0.0.1 only)")]
pub struct Args {
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
    /// How the validate set is seeded: `http` (through the API, as clients would) or
    /// `direct` (the server library's own operations run in this process against the
    /// database, `--seed-concurrency` at a time: fast enough for 100 000 subscriptions).
    #[arg(long, value_enum, default_value_t = SeedMode::Http)]
    seed_mode: SeedMode,
    /// Subscriptions seeded at once in `--seed-mode direct`.
    #[arg(long, default_value_t = 64)]
    seed_concurrency: usize,
    /// Subscriptions to seed for validation.
    #[arg(long, default_value_t = 200)]
    subscriptions: usize,
    /// Validate only the first this many seeded subscriptions (0: all of them). Few keys are
    /// served from the server's short-lived license cache; many mostly from its read model.
    #[arg(long, default_value_t = 0)]
    validate_subscriptions: usize,
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
    /// How often the projection lag is sampled during the activate phase.
    #[arg(long, default_value_t = 100)]
    lag_sample_ms: u64,
    /// How long to wait for the read models to catch up after the activate phase (and
    /// after seeding) before giving up.
    #[arg(long, default_value_t = 600)]
    catch_up_timeout_secs: u64,
    /// Events the long-history subscription has before the activate-history phase.
    #[arg(long, default_value_t = 10_000)]
    history_events: usize,
    /// The server binary, for the replay phase (default: `flowlytix` beside this one).
    #[arg(long)]
    server_bin: Option<std::path::PathBuf>,
    /// How long the replay may take before it is stopped and the run fails.
    #[arg(long, default_value_t = 1800)]
    replay_timeout_secs: u64,
    /// Policy changes the policy-propagation phase makes (detach and attach in turn).
    #[arg(long, default_value_t = 5)]
    propagation_changes: usize,
    /// Subscriptions (one device each) the heartbeat phases beat, at most `--subscriptions`.
    /// Their leases last ten minutes from their seeding: the set must be measured within
    /// them.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_subscriptions: usize,
    /// Live leases when the lease-culler phase sweeps (rows inserted up to this number).
    #[arg(long, default_value_t = 100_000)]
    culler_leases: usize,
    /// Of them, leases past their deadline (real subscriptions, one device each).
    #[arg(long, default_value_t = 100)]
    culler_due: usize,
    /// Also write every figure, machine-readably, to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Which phases to run, comma-separated (default: all, in this order).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "livez,validate,access-log,activate,activate-history,db-select-events,db-select-rm,db-insert,replay,validate-policy,policy-propagation,heartbeat,lease-culler"
    )]
    phases: Vec<PhaseKind>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseKind {
    Livez,
    Validate,
    /// livez and validate again, on a server with ACCESS_LOG=true and on one with it
    /// false (each started for the purpose on the same database).
    AccessLog,
    Activate,
    /// Activation on a subscription with `--history-events` prior events, and on a fresh
    /// one (needs the in-process application, as `--seed-mode direct` does).
    ActivateHistory,
    DbSelectEvents,
    DbSelectRm,
    DbInsert,
    /// `flowlytix replay` on the server's database, while the server runs (last of the
    /// phases on the validate set).
    Replay,
    /// Validation of subscriptions that follow a policy, beside `/livez` and the plain
    /// validate set, on a second server (after every phase above, on a set of its own;
    /// needs the in-process application).
    ValidatePolicy,
    /// A policy change's time to reach another instance's validation (the second server's
    /// on PostgreSQL, the writer's own on the embedded store).
    PolicyPropagation,
    /// Heartbeats beside validation by token of the same devices, on the measured server,
    /// with the events table counted around them (last, on a set of its own; needs the
    /// in-process application).
    Heartbeat,
    /// The lease culler's query and one pass over `--culler-leases` live leases of which
    /// `--culler-due` are due (needs the in-process application).
    LeaseCuller,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedMode {
    Http,
    Direct,
}

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
    // A SQLite file is on this machine by construction.
    if !args.database_url.starts_with("sqlite:") {
        require_loopback("--database-url", &args.database_url)?;
    }
    let base = base.as_str().trim_end_matches('/').to_owned();
    let client = Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let baseline = Baseline::connect(&args.database_url, u32::try_from(args.concurrency)?).await?;

    let token = api::login(&client, &base, &args.admin_email, &args.admin_password).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let bench = Bench {
        client,
        base,
        token,
        run_id,
    };
    let health = bench.health().await?;
    println!(
        "server {}: version {}, bus {}, database {}",
        bench.base, health["version"], health["bus"]["kind"], health["database"]
    );
    println!(
        "concurrency {}, {} s per phase (+{} s warm-up), {} subscriptions x {} devices",
        args.concurrency,
        args.duration_secs,
        args.warmup_secs,
        args.subscriptions,
        args.devices_per_subscription
    );

    let run = RunInfo {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine_at_start: machine::facts(),
        server: serde_json::json!({
            "url": bench.base,
            "version": health["version"],
            "bus": health["bus"]["kind"],
            "database": if args.database_url.starts_with("sqlite:") { "sqlite" } else { "postgres" },
        }),
        settings: serde_json::json!({
            "concurrency": args.concurrency,
            "duration_secs": args.duration_secs,
            "warmup_secs": args.warmup_secs,
            "subscriptions": args.subscriptions,
            "devices_per_subscription": args.devices_per_subscription,
            "seed_mode": format!("{:?}", args.seed_mode).to_lowercase(),
            "history_events": args.history_events,
            "validate_subscriptions": args.validate_subscriptions,
            "lag_sample_ms": args.lag_sample_ms,
            "heartbeat_subscriptions": args.heartbeat_subscriptions.min(args.subscriptions),
            "culler_leases": args.culler_leases,
            "culler_due": args.culler_due,
            "phases": args.phases.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>(),
        }),
        seed: serde_json::Value::Null,
    };

    // The in-process application seeds in direct mode and makes the long history.
    let in_process = if args.seed_mode == SeedMode::Direct
        || args.phases.iter().any(|p| {
            matches!(
                p,
                PhaseKind::ActivateHistory
                    | PhaseKind::ValidatePolicy
                    | PhaseKind::PolicyPropagation
                    | PhaseKind::Heartbeat
                    | PhaseKind::LeaseCuller
            )
        }) {
        Some(direct::InProcess::start(&args.database_url, &bench.run_id).await?)
    } else {
        None
    };
    let result = seed_and_measure(&args, &bench, &baseline, in_process.as_ref(), run).await;
    if let Some(in_process) = in_process {
        in_process.close().await;
    }
    let dropped = baseline.drop_scratch().await;
    baseline.close().await;
    let report = result?;
    dropped?;
    report.print();
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json::render(&report))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

async fn seed_and_measure(
    args: &Args,
    bench: &Bench,
    baseline: &Baseline,
    in_process: Option<&direct::InProcess>,
    mut run: RunInfo,
) -> Result<Report, BoxError> {
    let started = Instant::now();
    let licenses = match in_process.filter(|_| args.seed_mode == SeedMode::Direct) {
        Some(in_process) => {
            direct::licenses(&in_process.app, args, &bench.run_id, "s", None).await?
        }
        None => seed::licenses_over_http(bench, args).await?,
    };
    let seeded_in = started.elapsed();
    run.seed = serde_json::json!({
        "mode": format!("{:?}", args.seed_mode).to_lowercase(),
        "subscriptions": licenses.len(),
        "activations": licenses.iter().map(|(_, f)| f.len()).sum::<usize>(),
        "seconds": seeded_in.as_secs_f64(),
    });
    let seeded = seed::seed(bench, args, licenses, seeded_in).await?;
    let (seed_catch_up_secs, memory_after_seed) =
        after_seeding(args, bench, started + seeded_in).await;

    let ctx = Ctx {
        args,
        bench,
        baseline,
    };
    let mut report = measure_all(&ctx, &seeded, in_process, run).await?;
    report.memory_after_seed = memory_after_seed;
    report.seed_catch_up_secs = seed_catch_up_secs;
    Ok(report)
}

/// Waits until the read models hold everything seeded: the seconds that took after the
/// seeding ended, and the server's memory then (with `--server-pid`).
async fn after_seeding(
    args: &Args,
    bench: &Bench,
    seed_ended: Instant,
) -> (Option<f64>, Option<machine::Memory>) {
    let caught_up = lag::catch_up(
        bench,
        seed_ended,
        Duration::from_secs(args.catch_up_timeout_secs),
    )
    .await;
    match caught_up {
        Some(seconds) => println!("read models caught up with the seeding {seconds:.1} s after it"),
        None => println!("read models did NOT catch up with the seeding"),
    }
    let memory = args.server_pid.and_then(machine::memory);
    if let Some(memory) = memory {
        println!("server RSS {:.1} MB", machine::mb(memory.rss));
    }
    (caught_up, memory)
}

async fn measure_all(
    ctx: &Ctx<'_>,
    seeded: &Seeded,
    in_process: Option<&direct::InProcess>,
    run: RunInfo,
) -> Result<Report, BoxError> {
    println!("measuring:");
    let wants = |kind: PhaseKind| ctx.args.phases.contains(&kind);
    let mut phases = Vec::new();
    if wants(PhaseKind::Livez) {
        phases.push(phases::livez(ctx).await?);
    }
    if wants(PhaseKind::Validate) {
        phases.push(phases::validate(ctx, seeded).await?);
    }
    if wants(PhaseKind::AccessLog) {
        phases.extend(access_log::phases(ctx, seeded).await?);
    }
    let mut lag = None;
    let mut catch_up_secs = None;
    if wants(PhaseKind::Activate) {
        let activated = phases::activate(ctx, seeded).await?;
        phases.push(activated.phase);
        lag = Some(activated.lag);
        catch_up_secs = activated.catch_up_secs;
    }
    let mut history_events = None;
    if let Some(in_process) = in_process.filter(|_| wants(PhaseKind::ActivateHistory)) {
        let history = history::phases(ctx, &in_process.app, ctx.args.history_events).await?;
        phases.push(history.fresh);
        phases.push(history.long);
        history_events = Some(HistoryEvents {
            long_before: history.long_events,
            long_after: history.long_events_after,
            fresh_after: history.fresh_events_after,
        });
    }
    phases::database(ctx, seeded, &mut phases).await?;
    let mut replay = None;
    if wants(PhaseKind::Replay) {
        settle(ctx, "replay").await;
        let events = ctx.baseline.count_events().await?;
        // A replay that fails is reported, not fatal: the other figures stand.
        match replay::run(ctx.args, events).await {
            Ok(figures) => {
                println!(
                    "  replay: {} events, {} events/s by its own count, {:.1} s in all",
                    figures.events,
                    figures
                        .events_per_second
                        .map_or_else(|| "?".to_owned(), |r| format!("{r:.0}")),
                    figures.wall_secs
                );
                if let Some([folding, writing, catching_up]) = figures.phases {
                    println!("  replay phases: folding {folding:.2} s, writing {writing:.2} s, catching up and swapping {catching_up:.2} s");
                }
                replay = Some(Ok(figures));
            }
            Err(error) => {
                println!("  replay FAILED: {error}");
                replay = Some(Err(error.to_string()));
            }
        }
    }
    // The measured server's memory at the end of the phases on the validate set (before
    // the policy phases' seeding adds to its read models).
    let memory_end = ctx.args.server_pid.and_then(machine::memory);
    let mut propagation = None;
    if wants(PhaseKind::ValidatePolicy) || wants(PhaseKind::PolicyPropagation) {
        let in_process = in_process.ok_or("the policy phases need the in-process application")?;
        let figures = policy::phases(ctx, seeded, &in_process.app).await?;
        phases.extend(figures.phases);
        propagation = figures.propagation;
    }
    let mut heartbeat = None;
    let mut culler = None;
    if wants(PhaseKind::Heartbeat) || wants(PhaseKind::LeaseCuller) {
        let in_process = in_process.ok_or("the lease phases need the in-process application")?;
        let figures = heartbeat::phases(ctx, &in_process.app).await?;
        phases.extend(figures.phases);
        heartbeat = figures.heartbeat;
        culler = figures.culler;
    }
    Ok(Report {
        run,
        phases,
        lag,
        catch_up_secs,
        memory_after_seed: None,
        seed_catch_up_secs: None,
        memory_end,
        history_events,
        replay,
        propagation,
        heartbeat,
        culler,
    })
}
