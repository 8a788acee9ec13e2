//! Figures read afresh at each scrape rather than counted as things happen: where the
//! pipeline stands (the log's head, each projector's checkpoint, the publisher's backlog and
//! leadership, the JetStream consumers), and the process (RSS, CPU seconds, open fds).
//! Each read is bounded, so a slow database or NATS delays a scrape by at most that.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge};

use super::record;
use crate::bus::JetStreamBus;
use crate::read;
use crate::read::progress::EventCount;
use crate::store::publisher::PublisherStatus;
use crate::store::Db;

const LOG_HEAD: &str = "flowlytix_event_log_head_events";
const PROJECTOR_CHECKPOINT: &str = "flowlytix_projector_checkpoint_events";
const PROJECTOR_LAG: &str = "flowlytix_projector_lag_events";
const PROJECTOR_PARKED: &str = "flowlytix_projector_parked_events";
const PUBLISHER_LEADER: &str = "flowlytix_publisher_leader";
const PUBLISHER_BACKLOG: &str = "flowlytix_publisher_backlog_events";
const CONSUMER_PENDING: &str = "flowlytix_jetstream_consumer_pending_messages";
const CONSUMER_ACK_PENDING: &str = "flowlytix_jetstream_consumer_ack_pending_messages";
const CONSUMER_REDELIVERED: &str = "flowlytix_jetstream_consumer_redelivered_messages";
const SCRAPE_ERRORS: &str = "flowlytix_metrics_sample_errors_total";
const WEBHOOK_PENDING: &str = "flowlytix_webhook_deliveries_pending";
const WEBHOOK_DUE: &str = "flowlytix_webhook_deliveries_due";
const WEBHOOK_FAILING: &str = "flowlytix_webhook_endpoints_failing";
const WEBHOOK_DISABLED: &str = "flowlytix_webhook_endpoints_disabled_failing";
const LEASES_LIVE: &str = "flowlytix_leases_live";

/// How long one scrape may wait for the database or NATS.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

pub(super) fn describe() {
    describe_gauge!(
        LOG_HEAD,
        "Events in the event log (the head every projector is measured against)"
    );
    describe_gauge!(
        PROJECTOR_CHECKPOINT,
        "Events a projector has handled (its checkpoint, in events)"
    );
    describe_gauge!(
        PROJECTOR_LAG,
        "Events in the log a projector has not handled yet"
    );
    describe_gauge!(
        PROJECTOR_PARKED,
        "Events a projector has parked in dead_letters, all instances"
    );
    describe_gauge!(
        PUBLISHER_LEADER,
        "1 when this instance holds the publisher lock"
    );
    describe_gauge!(
        PUBLISHER_BACKLOG,
        "Committed events not yet published, as last measured by this instance as leader"
    );
    describe_gauge!(
        CONSUMER_PENDING,
        "Stream messages a projector's JetStream consumer has not been handed yet"
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        "Messages handed to a projector's consumer and not acknowledged yet"
    );
    describe_gauge!(
        CONSUMER_REDELIVERED,
        "Messages redelivered to a projector's consumer and not acknowledged yet"
    );
    describe_gauge!(
        WEBHOOK_PENDING,
        "Webhook deliveries waiting for an attempt, all instances (the queue's depth)"
    );
    describe_gauge!(
        WEBHOOK_DUE,
        "Pending webhook deliveries of enabled endpoints whose time has come"
    );
    describe_gauge!(
        WEBHOOK_FAILING,
        "Webhook endpoints whose deliveries have failed since their last success"
    );
    describe_gauge!(
        WEBHOOK_DISABLED,
        "Webhook endpoints the server disabled because their deliveries kept failing"
    );
    describe_gauge!(
        LEASES_LIVE,
        "Device leases the events hold live, all instances (past their deadline until culled)"
    );
    describe_counter!(
        SCRAPE_ERRORS,
        "Scrapes whose database or NATS figures could not be read, by source"
    );
    process().describe();
}

/// What the sampled gauges are read from.
pub struct Sources<'a> {
    pub db: &'a Db,
    pub event_count: &'a EventCount,
    pub publisher_status: &'a PublisherStatus,
    pub jetstream: Option<&'a JetStreamBus>,
    /// Whether the analytics projector runs (`ENABLE_ANALYTICS`).
    pub analytics: bool,
}

/// Sets every sampled gauge from `sources` as they are now.
pub async fn sample(sources: Sources<'_>) {
    process().collect();
    let status = sources.publisher_status;
    gauge!(PUBLISHER_LEADER).set(if status.leader.load(Ordering::Relaxed) {
        1.0
    } else {
        0.0
    });
    gauge!(PUBLISHER_BACKLOG).set(status.backlog.load(Ordering::Relaxed) as f64);
    if !matches!(
        tokio::time::timeout(
            READ_TIMEOUT,
            pipeline(sources.db, sources.event_count, sources.analytics)
        )
        .await,
        Ok(Ok(()))
    ) {
        counter!(SCRAPE_ERRORS, "source" => "database").increment(1);
    }
    if let Some(jetstream) = sources.jetstream {
        match tokio::time::timeout(READ_TIMEOUT, jetstream.consumer_states()).await {
            Ok(Ok(states)) => {
                for state in states {
                    let consumer = [("consumer", state.consumer)];
                    gauge!(CONSUMER_PENDING, &consumer).set(state.pending as f64);
                    gauge!(CONSUMER_ACK_PENDING, &consumer).set(state.ack_pending as f64);
                    gauge!(CONSUMER_REDELIVERED, &consumer).set(state.redelivered as f64);
                }
            }
            _ => counter!(SCRAPE_ERRORS, "source" => "nats").increment(1),
        }
    }
}

/// The log's head against each projector's checkpoint (the gap KurrentDB and Eventuous
/// report per subscription).
async fn pipeline(db: &Db, event_count: &EventCount, analytics: bool) -> Result<(), sqlx::Error> {
    let head = event_count.total(db).await?;
    gauge!(LOG_HEAD).set(head as f64);
    for projector in read::progress::projectors(db, analytics).await? {
        let lag = (head - projector.events_applied).max(0);
        gauge!(PROJECTOR_CHECKPOINT, "projector" => projector.name)
            .set(projector.events_applied as f64);
        gauge!(PROJECTOR_LAG, "projector" => projector.name).set(lag as f64);
        gauge!(PROJECTOR_PARKED, "projector" => projector.name).set(projector.parked as f64);
        if lag == 0 {
            record::projector_caught_up(projector.name);
        }
    }
    let queue = read::webhooks::queue_stats(db, chrono::Utc::now().timestamp_millis()).await?;
    gauge!(WEBHOOK_PENDING).set(queue.pending as f64);
    gauge!(WEBHOOK_DUE).set(queue.due as f64);
    gauge!(WEBHOOK_FAILING).set(queue.failing_endpoints as f64);
    gauge!(WEBHOOK_DISABLED).set(queue.auto_disabled_endpoints as f64);
    let mut connection = db.acquire().await?;
    let live = flowlytix_projections::leases::live_count(connection.conn()).await?;
    gauge!(LEASES_LIVE).set(live as f64);
    Ok(())
}
