//! The phases: what each one sends, in the order they run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowlytix_server::read::licenses::subscription_id_by_key_hash;
use flowlytix_server::store::Lookup;
use reqwest::StatusCode;
use serde_json::json;

use crate::api::activate_body;
use crate::baseline::Baseline;
use crate::lag::{catch_up, LagFigures, Newest, Sampler};
use crate::measure::{contains, finish, measured, phase, pick, prepare, problem_code, Ctx, Phase};
use crate::seed::Seeded;
use crate::{BoxError, PhaseKind};

pub async fn livez(ctx: &Ctx<'_>) -> Result<Phase, BoxError> {
    let client = ctx.bench.client.clone();
    let url = Arc::new(format!("{}/livez", ctx.bench.base));
    phase("GET /livez", "livez", ctx, move |_, _| {
        let request = client.get(url.as_str()).send();
        async move { finish(request.await, StatusCode::OK).await.map(drop) }
    })
    .await
}

pub async fn validate(ctx: &Ctx<'_>, seeded: &Seeded) -> Result<Phase, BoxError> {
    validate_set(ctx, "POST validate", "validate", &seeded.validate_bodies).await
}

/// `POST /api/v1/licensing/validate` with random bodies of `all` (a seeded set's, a
/// subscription's devices at a time, in seeding order; `--validate-subscriptions` limits it
/// to the first subscriptions), each answer checked to be valid.
pub async fn validate_set(
    ctx: &Ctx<'_>,
    name: &'static str,
    key: &'static str,
    all: &[Bytes],
) -> Result<Phase, BoxError> {
    let client = ctx.bench.client.clone();
    let url = Arc::new(format!("{}/api/v1/licensing/validate", ctx.bench.base));
    let limit = match ctx.args.validate_subscriptions {
        0 => all.len(),
        n => all
            .len()
            .min(n * ctx.args.devices_per_subscription as usize),
    };
    let bodies = Arc::new(all[..limit].to_vec());
    phase(name, key, ctx, move |worker, i| {
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
                Err(format!("not valid: {}", problem_code(&body)))
            }
        }
    })
    .await
}

/// What the activate phase found besides its own figures.
pub struct Activated {
    pub phase: Phase,
    pub lag: LagFigures,
    /// Seconds from the end of the phase until every projector had caught up.
    pub catch_up_secs: Option<f64>,
}

/// New devices on the subscriptions made for it, with the projection lag sampled while it
/// runs and the catch-up time after it.
pub async fn activate(ctx: &Ctx<'_>, seeded: &Seeded) -> Result<Activated, BoxError> {
    let client = ctx.bench.client.clone();
    let url = Arc::new(format!("{}/api/v1/licensing/activate", ctx.bench.base));
    let keys = Arc::new(seeded.activate_keys.clone());
    let concurrency = ctx.args.concurrency;
    let per_worker = ctx.args.activate_subscriptions_per_worker as u64;
    let sequence = Arc::new(AtomicU64::new(0));
    let run_id = Arc::new(ctx.bench.run_id.clone());
    let newest = Arc::new(Newest::default());
    let recorder = newest.clone();
    let op = move |worker: usize, i: u64| {
        let key = &keys[worker + concurrency * (i % per_worker) as usize];
        let n = sequence.fetch_add(1, Ordering::Relaxed);
        let fingerprint = format!("bench-{run_id}-new-{n}");
        let request = client
            .post(url.as_str())
            .json(&activate_body(key, &fingerprint))
            .send();
        let recorder = recorder.clone();
        async move {
            let body = finish(request.await, StatusCode::CREATED).await?;
            recorder.record(&body, Instant::now());
            Ok(())
        }
    };
    let (name, key) = ("POST activate", "activate");
    prepare(name, key, ctx, op.clone()).await?;
    let sampler = Sampler::start(
        ctx.bench,
        newest,
        Duration::from_millis(ctx.args.lag_sample_ms.max(1)),
    );
    let phase = measured(name, key, ctx, op).await?;
    let ended = Instant::now();
    let lag = sampler.stop().await;
    let catch_up_secs = catch_up(
        ctx.bench,
        ended,
        Duration::from_secs(ctx.args.catch_up_timeout_secs),
    )
    .await;
    println!(
        "  projection lag under load: {} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} gave up, {} failed); caught up {}",
        lag.samples_us.len(),
        lag.p50_ms(),
        lag.p99_ms(),
        lag.max_ms(),
        lag.gave_up,
        lag.errors,
        catch_up_secs.map_or_else(|| "NOT within the limit".to_owned(), |s| format!("{s:.2} s after the phase")),
    );
    Ok(Activated {
        phase,
        lag,
        catch_up_secs,
    })
}

/// The database phases: point selects through the server's own lookups, and an insert.
pub async fn database(
    ctx: &Ctx<'_>,
    seeded: &Seeded,
    phases: &mut Vec<Phase>,
) -> Result<(), BoxError> {
    let wants = |kind: PhaseKind| ctx.args.phases.contains(&kind);
    let db = ctx.baseline.db.clone();
    let hashes = Arc::new(seeded.key_hashes.clone());
    if wants(PhaseKind::DbSelectEvents) {
        // The server's own event-log lookup (what validate and activate use to find a key).
        let lookup = Lookup::new(db.clone());
        let h = hashes.clone();
        phases.push(
            phase(
                "DB select events by key",
                "db_select_events",
                ctx,
                move |worker, i| {
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
                },
            )
            .await?,
        );
    }

    if wants(PhaseKind::DbSelectRm) {
        // The server's own read-model lookup.
        let db = db.clone();
        phases.push(
            phase(
                "DB select rm_subscriptions",
                "db_select_rm",
                ctx,
                move |worker, i| {
                    let db = db.clone();
                    let hashes = hashes.clone();
                    let index = pick(hashes.len(), worker, i);
                    async move {
                        let id = subscription_id_by_key_hash(&db, &hashes[index])
                            .await
                            .map_err(|e| format!("database: {e}"))?;
                        id.map(drop).ok_or_else(|| "key hash not found".to_owned())
                    }
                },
            )
            .await?,
        );
    }

    if wants(PhaseKind::DbInsert) {
        ctx.baseline.create_scratch().await?;
        phases.push(
            phase(
                "DB insert scratch row",
                "db_insert",
                ctx,
                move |worker, i| {
                    let db = db.clone();
                    let payload =
                        json!({"worker": worker, "i": i, "fingerprint_hash": "0".repeat(64)})
                            .to_string();
                    async move {
                        Baseline::insert_scratch(&db, payload)
                            .await
                            .map_err(|e| format!("database: {e}"))
                    }
                },
            )
            .await?,
        );
    }
    Ok(())
}
