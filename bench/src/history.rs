//! "Activate on a long history": activation on a subscription with many prior events
//! against the same on a fresh one. A command whose cost grows with the aggregate's history
//! shows here as a ratio above 1.
//!
//! Both subscriptions get the same devices; the phases re-activate them (idempotent: no new
//! device, a fresh token, one `LicenseTokenIssued` event each), all workers on the one
//! subscription, so the figures are the per-command cost on one aggregate. The history is
//! made in-process: `LicenseTokenIssued` events, as token refreshes make them, appended by
//! the subscription command runner (`SubscriptionCommands::run`) a few hundred per command
//! so that making them does not itself cost O(n²).

use std::sync::Arc;

use chrono::Utc;
use flowlytix_aggregates::{SubscriptionAction, SubscriptionId};
use flowlytix_server::licensing::fingerprint_hash;
use flowlytix_server::App;
use reqwest::StatusCode;
use uuid::Uuid;

use crate::api::activate_body;
use crate::direct::{self, metadata};
use crate::measure::{finish, phase, Ctx, Phase};
use crate::BoxError;

/// Devices on each of the two subscriptions.
const DEVICES: u32 = 3;
/// Events appended per command while making the history.
const EVENTS_PER_COMMAND: usize = 500;

/// A subscription the phases activate on.
pub struct Subject {
    id: SubscriptionId,
    key: String,
    fingerprints: Vec<String>,
}

pub struct HistoryPhases {
    pub fresh: Phase,
    pub long: Phase,
    /// Events the long subscription had when its phase began.
    pub long_events: u64,
    /// Events each subscription had when its phase ended: every re-activation adds one, so
    /// the fresh one is less fresh by the end of its phase (with a command cost that grows
    /// with history, the ratio is understated by that much).
    pub fresh_events_after: u64,
    pub long_events_after: u64,
}

/// A subscription with `DEVICES` devices and `prior_events` more events on top.
async fn subject(
    app: &App,
    run_id: &str,
    label: &str,
    prior_events: usize,
) -> Result<Subject, BoxError> {
    let (key, fingerprints, id) = direct::license(app, run_id, label, DEVICES).await?;
    let mut left = prior_events;
    while left > 0 {
        let n = left.min(EVENTS_PER_COMMAND);
        let now = Utc::now();
        let mut actions = Vec::with_capacity(n);
        for i in 0..n {
            let fingerprint = &fingerprints[i % fingerprints.len()];
            actions.push(SubscriptionAction::IssueLicenseToken {
                fingerprint_hash: fingerprint_hash(fingerprint)?,
                token_id: Uuid::new_v4(),
                expires_at: app.licensing.tokens().requested_expiry(now),
            });
        }
        app.subscriptions
            .commands()
            .run(id, actions, metadata(), None)
            .await?;
        left -= n;
    }
    Ok(Subject {
        id,
        key,
        fingerprints,
    })
}

/// The aggregate's version: how many events it has.
async fn events_of(app: &App, id: SubscriptionId) -> Result<u64, BoxError> {
    Ok(app.subscriptions.commands().load(id).await?.1)
}

async fn activate_on(
    ctx: &Ctx<'_>,
    name: &'static str,
    key: &'static str,
    subject: &Subject,
) -> Result<Phase, BoxError> {
    let client = ctx.bench.client.clone();
    let url = Arc::new(format!("{}/api/v1/licensing/activate", ctx.bench.base));
    let bodies: Arc<Vec<_>> = Arc::new(
        subject
            .fingerprints
            .iter()
            .map(|fingerprint| activate_body(&subject.key, fingerprint))
            .collect(),
    );
    phase(name, key, ctx, move |worker, i| {
        let body = &bodies[(worker + i as usize) % bodies.len()];
        let request = client.post(url.as_str()).json(body).send();
        async move { finish(request.await, StatusCode::CREATED).await.map(drop) }
    })
    .await
}

pub async fn phases(
    ctx: &Ctx<'_>,
    app: &App,
    prior_events: usize,
) -> Result<HistoryPhases, BoxError> {
    let run_id = &ctx.bench.run_id;
    let started = std::time::Instant::now();
    let fresh = subject(app, run_id, "history-fresh", 0).await?;
    let long = subject(app, run_id, "history-long", prior_events).await?;
    let long_events = events_of(app, long.id).await?;
    println!(
        "  made a subscription with {long_events} events (and a fresh one with {}) in {:.1} s",
        events_of(app, fresh.id).await?,
        started.elapsed().as_secs_f64()
    );
    let fresh_phase = activate_on(
        ctx,
        "POST activate, fresh sub",
        "activate_fresh_history",
        &fresh,
    )
    .await?;
    let fresh_events = events_of(app, fresh.id).await?;
    let long_phase = activate_on(
        ctx,
        "POST activate, long history",
        "activate_long_history",
        &long,
    )
    .await?;
    let long_events_after = events_of(app, long.id).await?;
    println!(
        "  events on the subscription by the end of its phase: fresh {fresh_events}, long {long_events_after}"
    );
    Ok(HistoryPhases {
        fresh: fresh_phase,
        long: long_phase,
        long_events,
        fresh_events_after: fresh_events,
        long_events_after,
    })
}
