//! The dispatcher: every instance runs one. It claims due deliveries endpoint by endpoint
//! (at most [`MAX_IN_FLIGHT_PER_ENDPOINT`] at a time each, so a slow or dead receiver ties
//! up only its own share), POSTs each as its own task with a timeout, logs the attempt, and
//! schedules the retry. Commands, projections and validation never wait for it: it only
//! reads the queue the `webhooks` projector fills.
//!
//! At shutdown it stops claiming and waits for the attempts in flight, so that each records
//! its outcome before the database closes: an attempt left unrecorded would be sent again
//! once its lease ran out, after every deploy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowlytix_aggregates::webhook_endpoint::{DisableReason, WebhookEndpointState};
use flowlytix_aggregates::{WebhookEndpointCommand, WebhookEndpointId};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::manage::check_url_policy;
use super::payload::outgoing;
use super::signing::signature;
use super::ssrf::CheckedResolver;
use super::Webhooks;
use crate::config::WebhookSettings;
use crate::store::webhook_queue::{self, Attempt, Claimed, Next};
use crate::store::{Db, EventMetadata};

/// Deliveries of one endpoint in flight on one instance, at most.
pub const MAX_IN_FLIGHT_PER_ENDPOINT: usize = 4;
/// A lease outlives the attempt's timeout by this much, so it never lapses mid-attempt
/// (recording the attempt is one short transaction). It is also how long a delivery that a
/// dead instance had in flight waits before another instance tries it.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The HTTP client deliveries go out with: no redirects followed, no proxy from the
/// environment (the connection must go to the address that was checked), a timeout per
/// attempt, and unless private receivers are allowed, a resolver that drops forbidden
/// addresses.
pub fn delivery_client(settings: &WebhookSettings) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .https_only(!settings.allow_http)
        .user_agent(concat!("Flowlytix-Webhooks/", env!("CARGO_PKG_VERSION")));
    if !settings.allow_private {
        builder = builder.dns_resolver(Arc::new(CheckedResolver));
    }
    builder.build().unwrap_or_else(|error| {
        tracing::error!(%error, "cannot build the webhook client with its settings; using a default one");
        reqwest::Client::new()
    })
}

pub struct Dispatcher {
    webhooks: Arc<Webhooks>,
    db: Db,
    settings: WebhookSettings,
    client: reqwest::Client,
    in_flight: Mutex<HashMap<Uuid, usize>>,
    /// The attempts under way, waited for at shutdown.
    attempts: TaskTracker,
}

impl Dispatcher {
    pub fn new(webhooks: Arc<Webhooks>, db: Db, settings: WebhookSettings) -> Arc<Self> {
        Arc::new(Self {
            client: delivery_client(&settings),
            webhooks,
            db,
            settings,
            in_flight: Mutex::default(),
            attempts: TaskTracker::new(),
        })
    }

    /// Claims and delivers until `shutdown`, then returns once every attempt it started
    /// has been recorded (the caller bounds that wait with `SHUTDOWN_TIMEOUT_SECS`; each
    /// attempt is bounded by `WEBHOOK_TIMEOUT`).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let poll = self.settings.poll;
        while !*shutdown.borrow() {
            if let Err(error) = self.claim_due().await {
                tracing::warn!(%error, "webhook dispatcher could not read its queue; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.attempts.close();
        if !self.attempts.is_empty() {
            tracing::info!(
                in_flight = self.attempts.len(),
                "waiting for the webhook attempts in flight to finish"
            );
        }
        self.attempts.wait().await;
    }

    /// Claims what is due, endpoint by endpoint, and starts a task per delivery.
    async fn claim_due(self: &Arc<Self>) -> Result<(), sqlx::Error> {
        let db = &self.db;
        let now = Utc::now().timestamp_millis();
        let lease = self.settings.timeout + LEASE_MARGIN;
        let lease_until = now + lease.as_millis() as i64;
        webhook_queue::cancel_for_deleted_endpoints(db).await?;
        for endpoint in webhook_queue::endpoints_with_due_deliveries(db, now).await? {
            let free = MAX_IN_FLIGHT_PER_ENDPOINT.saturating_sub(self.in_flight_of(endpoint));
            if free == 0 {
                continue;
            }
            let claimed = webhook_queue::claim(db, endpoint, free as i64, now, lease_until).await?;
            for delivery in claimed {
                self.count(endpoint, 1);
                let dispatcher = self.clone();
                self.attempts.spawn(async move {
                    let endpoint = delivery.endpoint_id;
                    if let Err(error) = dispatcher.deliver(&delivery).await {
                        // The lease runs out and another try claims it again.
                        tracing::warn!(delivery = %delivery.id, error = %crate::telemetry::error_chain(error.as_ref()), "webhook delivery could not be recorded");
                    }
                    dispatcher.count(endpoint, -1);
                });
            }
        }
        Ok(())
    }

    fn in_flight_of(&self, endpoint: Uuid) -> usize {
        let counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&endpoint).copied().unwrap_or(0)
    }

    fn count(&self, endpoint: Uuid, change: isize) {
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(endpoint).or_default();
        *entry = entry.saturating_add_signed(change);
        if *entry == 0 {
            counts.remove(&endpoint);
        }
    }

    /// One attempt of a claimed delivery, from the endpoint as its events have it now.
    async fn deliver(
        &self,
        claimed: &Claimed,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let id = WebhookEndpointId(claimed.endpoint_id);
        let (endpoint, _) = self.webhooks.load(id).await?;
        let Some(state) = endpoint.state().filter(|s| !s.deleted) else {
            webhook_queue::cancel(&self.db, claimed.id).await?;
            return Ok(());
        };
        if !state.enabled {
            webhook_queue::release(&self.db, claimed.id).await?;
            return Ok(());
        }
        let attempt = self.post(state, claimed).await;
        let next = self.next_step(claimed, &attempt);
        let failing_since = webhook_queue::record(&self.db, claimed, &attempt, next).await?;
        let outcome = match next {
            Next::Delivered => "delivered",
            Next::RetryAt { .. } => "retry",
            Next::GiveUp => "given_up",
        };
        crate::monitoring::record::webhook_attempt(
            outcome,
            Duration::from_millis(attempt.latency_ms.max(0) as u64),
        );
        if next != Next::Delivered {
            tracing::info!(delivery = %claimed.id, endpoint = %id, attempt = claimed.attempts + 1, status_code = ?attempt.status_code, error = ?attempt.error, "webhook delivery failed");
            self.disable_if_failing_too_long(id, failing_since, attempt.at)
                .await?;
        }
        Ok(())
    }

    /// Signs and POSTs the delivery's body; never fails, it reports.
    async fn post(&self, endpoint: &WebhookEndpointState, claimed: &Claimed) -> Attempt {
        let at = Utc::now();
        let started = Instant::now();
        let refused = |error: String| Attempt {
            status_code: None,
            latency_ms: 0,
            error: Some(error),
            at,
        };
        // The policy may have tightened since the URL was registered.
        if let Err(error) = check_url_policy(&endpoint.settings.url, &self.settings) {
            return refused(error.to_string());
        }
        let webhook_id = claimed.id.to_string();
        let timestamp = at.timestamp();
        let body = outgoing(&claimed.body, self.settings.include_request_metadata);
        let signed = match self.signatures(endpoint, &webhook_id, timestamp, &body, at) {
            Ok(signed) => signed,
            Err(error) => return refused(error.to_string()),
        };
        let sent = self
            .client
            .post(&endpoint.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(body.into_owned())
            .send()
            .await;
        let latency_ms = started.elapsed().as_millis() as i64;
        match sent {
            Ok(response) => {
                let status = response.status();
                Attempt {
                    status_code: Some(status.as_u16()),
                    latency_ms,
                    error: (!status.is_success()).then(|| {
                        if status.is_redirection() {
                            format!("the receiver answered {status}; redirects are not followed")
                        } else {
                            format!("the receiver answered {status}")
                        }
                    }),
                    at,
                }
            }
            // Without the URL: it may carry a token of the receiver's in its query.
            Err(error) => Attempt {
                status_code: None,
                latency_ms,
                error: Some(describe(&error.without_url())),
                at,
            },
        }
    }

    /// The `webhook-signature` value: a signature with the endpoint's secret, and during the
    /// grace after a rotation one with the replaced secret too (Standard Webhooks takes
    /// several, space-separated; a receiver accepts the delivery when any verifies), so a
    /// receiver still holding the old secret keeps verifying until it has the new one.
    fn signatures(
        &self,
        endpoint: &WebhookEndpointState,
        webhook_id: &str,
        timestamp: i64,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<String, super::secrets::SecretError> {
        let secrets = &self.webhooks.secrets;
        let key = secrets.open(endpoint.id, &endpoint.sealed_secret)?;
        let mut signed = signature(key.expose_secret(), webhook_id, timestamp, body.as_bytes());
        let grace = chrono::Duration::from_std(self.settings.rotation_grace)
            .unwrap_or(chrono::Duration::MAX);
        if let Some(previous) = endpoint
            .previous_secret
            .as_ref()
            .filter(|previous| at - previous.replaced_at < grace)
        {
            // The replaced secret may be unusable (sealed under another SECRET_KEY): the
            // current signature alone then goes, as it would after the grace.
            if let Ok(old) = secrets.open(endpoint.id, &previous.sealed_secret) {
                signed.push(' ');
                signed.push_str(&signature(
                    old.expose_secret(),
                    webhook_id,
                    timestamp,
                    body.as_bytes(),
                ));
            }
        }
        Ok(signed)
    }

    /// Delivered, retried after the schedule's next wait (with jitter), or given up.
    fn next_step(&self, claimed: &Claimed, attempt: &Attempt) -> Next {
        if attempt.error.is_none() {
            return Next::Delivered;
        }
        let schedule = &self.settings.retry_schedule;
        let failed_in_schedule = (claimed.attempts + 1 - claimed.schedule_start).max(1) as usize;
        match schedule.get(failed_in_schedule - 1) {
            Some(wait) => Next::RetryAt {
                ms: Utc::now().timestamp_millis() + jittered(*wait).as_millis() as i64,
            },
            None => Next::GiveUp,
        }
    }

    async fn disable_if_failing_too_long(
        &self,
        id: WebhookEndpointId,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some(since) = failing_since else {
            return Ok(());
        };
        let limit = chrono::Duration::from_std(self.settings.disable_after)
            .unwrap_or(chrono::Duration::MAX);
        if now - since < limit {
            return Ok(());
        }
        let command = WebhookEndpointCommand::Disable {
            reason: DisableReason::Failing,
            failing_since: Some(since),
            at: now,
        };
        let committed = self
            .webhooks
            .run(id, command, EventMetadata::system(now))
            .await?;
        if !committed.events.is_empty() {
            crate::monitoring::record::webhook_endpoint_auto_disabled();
            tracing::warn!(endpoint = %id, %since, "webhook endpoint disabled: its deliveries kept failing");
        }
        Ok(())
    }
}

/// `wait` ± 20%, so that receivers that failed together are not all retried together.
fn jittered(wait: Duration) -> Duration {
    let random = u16::from_le_bytes(crate::crypto::random_bytes::<2>());
    let factor = 0.8 + 0.4 * (f64::from(random) / f64::from(u16::MAX));
    wait.mul_f64(factor)
}

/// A transport error and its causes in one line (the resolver's refusal among them).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", crate::telemetry::error_chain(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth_of_the_wait() {
        for _ in 0..1000 {
            let wait = jittered(Duration::from_secs(10));
            assert!(wait >= Duration::from_secs(8) && wait <= Duration::from_secs(12));
        }
    }
}
