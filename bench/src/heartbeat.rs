//! Heartbeats (issue 23's "Speed"): `POST /api/v1/licensing/heartbeat` beside `validate` of
//! the same devices' tokens, on the measured server, same concurrency and duration, and
//! the culler's sweep (`lease-culler`, see `culler`).
//!
//! The set is its own: a policy made for the run (`require_heartbeat`, `heartbeat_duration`
//! `PT10M`, one device) and `--heartbeat-subscriptions` subscriptions that follow it (at
//! most `--subscriptions`), each with one device activated in-process through
//! `Licensing::activate`, which answers the device's signed token. A lease lasts ten
//! minutes from its activation and so do its first token: the set is seeded right before
//! its phases, after every other phase, and must be measured within those ten minutes
//! (hence its own, smaller, size).
//!
//! - `validate` with the tokens as credentials (`{"token", "fingerprint"}`), random
//!   devices, each answer checked to be valid;
//! - `heartbeat`: each worker owns the devices `w, w + concurrency, …` and beats them in
//!   turn, **sending the token the previous heartbeat of that device answered**, as a real
//!   client does (the first is the activation's); each answer is checked to carry a token.
//!   Workers never share a device, so no two heartbeats race on one lease row.
//!
//! The events table is counted before the heartbeat phase (its settling and warm-up
//! included) and after it: heartbeats write no event, so the two counts must be equal.
//!
//! What a heartbeat costs the server, from the code (`Licensing::heartbeat`; not counted by
//! a test): the token's signature verified, the license (cached, as validation has it), the
//! policy's terms (in memory), one conditional `UPDATE … returning` of the device's row in
//! `device_leases` (`leases::renew`), and a fresh token signed. A validation by token
//! verifies the signature and judges the cached license: no statement.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::{Code, Plan, PolicyCommand, PolicyId, PolicySettings, ProductId};
use flowlytix_server::App;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::culler::{self, CullerFigures};
use crate::direct::{self, Follow};
use crate::measure::{finish, phase, Ctx, Phase};
use crate::{phases, BoxError, PhaseKind};

/// The lease's length under the run's policy.
pub const HEARTBEAT_DURATION: &str = "PT10M";

/// Which token a worker sends with a device's next heartbeat.
pub const TOKEN_CHOICE: &str = "the token the previous heartbeat of that device answered";

/// One device of a seeded set, with what its activation issued.
pub struct LeasedDevice {
    pub fingerprint: String,
    pub device_id: Uuid,
    pub token: String,
}

/// What the heartbeat phases found besides their own figures.
pub struct HeartbeatFigures {
    /// Subscriptions (one device each) in the set.
    pub devices: usize,
    /// Rows of the events table before the heartbeat phase (settling and warm-up included)
    /// and after it.
    pub events_before: u64,
    pub events_after: u64,
    pub token_choice: &'static str,
}

pub struct LeaseFigures {
    pub phases: Vec<Phase>,
    pub heartbeat: Option<HeartbeatFigures>,
    pub culler: Option<CullerFigures>,
}

/// Makes the policy, then what was asked for: the culler's own subscriptions first (their
/// leases must be the first to fall due), then the heartbeat set and its two phases, then
/// the culler's sweep.
pub async fn phases(ctx: &Ctx<'_>, app: &App) -> Result<LeaseFigures, BoxError> {
    let wants = |kind: PhaseKind| ctx.args.phases.contains(&kind);
    let run_id = &ctx.bench.run_id;
    let follow = create_policy(app, run_id).await?;
    let mut figures = LeaseFigures {
        phases: Vec::new(),
        heartbeat: None,
        culler: None,
    };
    let mut due = None;
    if wants(PhaseKind::LeaseCuller) {
        let n = ctx.args.culler_due;
        println!("lease phases: seeding {n} subscriptions whose leases the culler will find due");
        let devices = seed(ctx, app, &follow, "c", n).await?;
        // Every one of their deadlines is at most this (activation + the lease), and every
        // lease taken or renewed from here on ends later.
        let due_at =
            Utc::now() + chrono::Duration::minutes(10) + chrono::Duration::milliseconds(500);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        due = Some((devices, due_at));
    }
    if wants(PhaseKind::Heartbeat) {
        let n = ctx.args.heartbeat_subscriptions.min(ctx.args.subscriptions);
        if n < ctx.args.concurrency {
            return Err("--heartbeat-subscriptions must be at least --concurrency".into());
        }
        println!(
            "heartbeat phases: seeding {n} subscriptions that follow a {HEARTBEAT_DURATION} heartbeat policy, one device each"
        );
        let started = Instant::now();
        let devices = seed(ctx, app, &follow, "h", n).await?;
        println!(
            "  seeded {} in {:.1} s",
            devices.len(),
            started.elapsed().as_secs_f64()
        );
        let (measured, heartbeat) = heartbeat_phases(ctx, &devices).await?;
        figures.phases = measured;
        figures.heartbeat = Some(heartbeat);
    }
    if let Some((devices, due_at)) = due {
        figures.culler = Some(culler::measure(ctx, app, &devices, due_at).await?);
    }
    Ok(figures)
}

/// The policy for the run: product `bench`, code `hb-<run id>`, one device, heartbeats every
/// `HEARTBEAT_DURATION` (dead devices deactivated: the default).
async fn create_policy(app: &App, run_id: &str) -> Result<Follow, BoxError> {
    let product_code = Code::parse("bench")?;
    let code = Code::parse(&format!("hb-{run_id}"))?;
    let product_id = ProductId::for_code(&product_code);
    let id = PolicyId::for_code(product_id, &code);
    let settings: PolicySettings = serde_json::from_value(json!({
        "name": "Bench heartbeat policy",
        "max_devices": 1,
        "require_heartbeat": true,
        "heartbeat_duration": HEARTBEAT_DURATION,
    }))?;
    app.policies
        .run(
            id,
            vec![PolicyCommand::Create {
                product_id,
                product_code,
                code: code.clone(),
                settings,
                at: Utc::now(),
            }],
            direct::metadata(),
            None,
        )
        .await?;
    Ok(Follow {
        policy_id: id,
        plan: Plan::from(&code),
    })
}

/// `n` followers of the policy, each made by one command, then one device activated on
/// each through `Licensing::activate` (which takes its lease and signs its token).
async fn seed(
    ctx: &Ctx<'_>,
    app: &App,
    follow: &Follow,
    label: &str,
    n: usize,
) -> Result<Vec<LeasedDevice>, BoxError> {
    let run_id = &ctx.bench.run_id;
    let results: Vec<Result<LeasedDevice, BoxError>> = futures::stream::iter(0..n)
        .map(|i| async move {
            let (key, _) = direct::seed_license(app, run_id, label, Some(follow), i, 0).await?;
            let fingerprint = crate::seed::fingerprint_labeled(run_id, label, i, 0);
            let issued = direct::activate_issued(app, &key, &fingerprint).await?;
            if issued.license.policy_id != Some(follow.policy_id) {
                return Err("a seeded subscription does not follow the heartbeat policy".into());
            }
            Ok(LeasedDevice {
                fingerprint,
                device_id: issued.device_id.as_uuid(),
                token: issued.token,
            })
        })
        .buffer_unordered(ctx.args.seed_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// `validate` by token, then `heartbeat`, on the measured server, with the events counted
/// around the latter.
async fn heartbeat_phases(
    ctx: &Ctx<'_>,
    devices: &[LeasedDevice],
) -> Result<(Vec<Phase>, HeartbeatFigures), BoxError> {
    let mut bodies = Vec::with_capacity(devices.len());
    for device in devices {
        let body = json!({"token": device.token, "fingerprint": device.fingerprint});
        bodies.push(Bytes::from(serde_json::to_vec(&body)?));
    }
    let validate = phases::validate_set(
        ctx,
        "POST validate, token",
        "validate_heartbeat_set",
        &bodies,
    )
    .await?;

    let tokens: Arc<Vec<Mutex<String>>> = Arc::new(
        devices
            .iter()
            .map(|d| Mutex::new(d.token.clone()))
            .collect(),
    );
    let client = ctx.bench.client.clone();
    let url = Arc::new(format!("{}/api/v1/licensing/heartbeat", ctx.bench.base));
    let concurrency = ctx.args.concurrency;
    let events_before = ctx.baseline.count_events().await?;
    let heartbeat = phase("POST heartbeat", "heartbeat", ctx, move |worker, i| {
        // Worker w owns w, w + concurrency, …: never a device another worker beats.
        let owned = (tokens.len() - worker).div_ceil(concurrency);
        let index = worker + concurrency * (i % owned as u64) as usize;
        let token = tokens[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let request = client
            .post(url.as_str())
            .json(&json!({ "token": token }))
            .send();
        let tokens = tokens.clone();
        async move {
            let body = finish(request.await, StatusCode::OK).await?;
            let answer: Value =
                serde_json::from_slice(&body).map_err(|e| format!("heartbeat answer: {e}"))?;
            let fresh = answer["token"]
                .as_str()
                .ok_or_else(|| "a heartbeat answered no token".to_owned())?;
            *tokens[index].lock().unwrap_or_else(PoisonError::into_inner) = fresh.to_owned();
            Ok(())
        }
    })
    .await?;
    let events_after = ctx.baseline.count_events().await?;
    println!(
        "  events table: {events_before} before the heartbeat phase, {events_after} after it{}",
        if events_after == events_before {
            ""
        } else {
            " (IT GREW)"
        }
    );
    Ok((
        vec![validate, heartbeat],
        HeartbeatFigures {
            devices: devices.len(),
            events_before,
            events_after,
            token_choice: TOKEN_CHOICE,
        },
    ))
}

/// The instant as the culler and the lease table are handed it.
pub fn at(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
