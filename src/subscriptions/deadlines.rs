//! The deadline scheduler: records `SubscriptionExpiringSoon`, `SubscriptionExpired` and
//! `SubscriptionGraceEnded` as their instants pass, so that they reach the feed, webhooks
//! and the history like any other event.
//!
//! - **The aggregate decides.** Every `EXPIRY_SCAN_INTERVAL` the scheduler finds the
//!   subscriptions that may have a notice due and runs `RecordDeadlines` on each, at the
//!   pass's instant. The aggregate records what is due and not yet recorded for the deadline
//!   in force, so a second run records nothing, and the event store's optimistic lock makes
//!   two concurrent runs record it once: exactly once, whoever runs it.
//! - **One leader** (`crate::leader`): on PostgreSQL only the instance holding the
//!   scheduler's advisory lock runs passes; the embedded server always leads.
//! - **Cheap passes.** The candidates come from the read model (`crate::read::deadlines`):
//!   the `subscriptions` projector copies each notice, with the deadline it was for, into
//!   `rm_subscriptions`, and partial indexes hold only the subscriptions still waiting for
//!   a notice. The queries ask for the ones whose next instant has come: no notice yet and
//!   the longest reminder (or the deadline) has come; reminded and the deadline has passed;
//!   expired in grace and the grace (as `SubscriptionExpired` recorded it) has ended. A
//!   pass reads what is due, not every subscription. The one exception: a nearer reminder
//!   (1 day after 7) is looked for in the window since the last pass (`covered`), since the
//!   reminded rows wait there for their deadline; a new leader's first pass looks at all.
//! - **Late rather than never.** Nothing is remembered but what the events say: whatever
//!   came due while no instance ran (or before this build: every subscription that had
//!   already expired) is found on the next pass and recorded then, with the instant of the
//!   recording; the events carry the deadline they are for. A pass that failed part-way
//!   does not move `covered`, so the next one looks again.
//! - Grace comes from the policy each subscription follows, inside the aggregate; the finder
//!   only copies `grace_until` from `SubscriptionExpired`. Should a policy's grace change
//!   after a subscription expired, a subscription is run early (it records nothing and is
//!   tried each pass until its grace ends) or late (when the recorded grace ends).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use flowlytix_aggregates::{SubscriptionAction, SubscriptionId};
use flowlytix_projections::{Conn, Db};
use tokio::sync::watch;

use super::SubscriptionCommands;
use crate::config::DeadlineSettings;
use crate::leader::{self, Duty, PassFuture};
use crate::monitoring::record;
use crate::read::deadlines::{due, DueWindow};
use crate::store::{EventMetadata, ExecuteError};

/// Any fixed number, distinct from the publisher's: the advisory lock that elects the
/// instance recording deadline notices.
const SCHEDULER_LOCK: i64 = 0x0066_6c6f_7764_6c6e;

pub struct DeadlineScheduler {
    commands: Arc<SubscriptionCommands>,
    settings: DeadlineSettings,
    /// The instant up to which the last complete pass found every due reminder (see
    /// [`DueWindow`]); a new leader starts without.
    covered: Option<DateTime<Utc>>,
}

/// What one pass came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Subscriptions the pass ran `RecordDeadlines` on.
    pub examined: usize,
    /// The event types recorded, in order.
    pub recorded: Vec<String>,
    /// Whether every candidate was decided (a command that failed for a reason that may
    /// pass, or a stop, leaves it undecided).
    pub complete: bool,
}

impl Duty for DeadlineScheduler {
    fn name(&self) -> &'static str {
        "deadline notices"
    }

    fn lock(&self) -> i64 {
        SCHEDULER_LOCK
    }

    fn interval(&self) -> Duration {
        self.settings.scan_interval
    }

    fn elected(&mut self) {
        self.covered = None;
    }

    fn pass<'a>(
        &'a mut self,
        db: Conn<'a>,
        now: DateTime<Utc>,
        shutdown: &'a watch::Receiver<bool>,
    ) -> PassFuture<'a> {
        Box::pin(async move {
            let pass = DeadlineScheduler::pass(self, db, now, self.covered, shutdown).await?;
            if pass.complete {
                self.covered = Some(now);
            } else {
                record::deadline_scan_failed();
            }
            Ok(())
        })
    }
}

impl DeadlineScheduler {
    pub fn new(commands: Arc<SubscriptionCommands>, settings: DeadlineSettings) -> Self {
        Self {
            commands,
            settings,
            covered: None,
        }
    }

    /// Leads when elected, until `shutdown` flips.
    pub async fn run(self, db: Db, shutdown: watch::Receiver<bool>) {
        leader::run(self, db, shutdown).await
    }

    /// Finds what may be due at `now` and records it. `covered`: see [`DueWindow`].
    pub async fn pass(
        &self,
        db: Conn<'_>,
        now: DateTime<Utc>,
        covered: Option<DateTime<Utc>>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Pass, sqlx::Error> {
        let window = DueWindow {
            now,
            covered,
            reminder_days: &self.settings.reminder_days,
        };
        let candidates = due(db, &window).await?;
        Ok(self.record(candidates, now, shutdown).await)
    }

    async fn record(
        &self,
        candidates: BTreeSet<SubscriptionId>,
        now: DateTime<Utc>,
        shutdown: &watch::Receiver<bool>,
    ) -> Pass {
        let mut pass = Pass {
            complete: true,
            ..Pass::default()
        };
        for id in candidates {
            if *shutdown.borrow() {
                pass.complete = false;
                break;
            }
            pass.examined += 1;
            let action = SubscriptionAction::RecordDeadlines {
                reminder_days: self.settings.reminder_days.clone(),
            };
            match self
                .commands
                .run(id, vec![action], EventMetadata::system(now), None)
                .await
            {
                Ok(committed) => {
                    for envelope in &committed.events {
                        let notice = envelope.payload.event_type();
                        tracing::info!(subscription = %id, %notice, "deadline notice recorded");
                        record::deadline_notice(notice.clone());
                        pass.recorded.push(notice);
                    }
                }
                // Refused for good (deleted since it was found, a policy this instance does
                // not know): the read model will move it out of the way, or it is found
                // again and refused again; neither blocks the others.
                Err(ExecuteError::Domain(error)) => {
                    tracing::debug!(subscription = %id, %error, "no deadline notice recorded");
                }
                Err(error) => {
                    tracing::warn!(subscription = %id, error = %crate::telemetry::error_chain(&error), "recording deadline notices failed; trying again next pass");
                    pass.complete = false;
                }
            }
        }
        pass
    }
}
