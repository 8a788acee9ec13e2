//! The named recording functions: every metric the server writes as it works, so call sites
//! stay one short line and every name is spelled once, here.

use std::time::Duration;

use chrono::Utc;
use flowlytix_projections::{EventRecord, Outcome};
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Label, Unit,
};

pub const HTTP_REQUESTS: &str = "flowlytix_http_requests_total";
pub const HTTP_DURATION: &str = "flowlytix_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "flowlytix_http_requests_in_flight";
pub const COMMANDS: &str = "flowlytix_commands_total";
pub const COMMAND_DURATION: &str = "flowlytix_command_duration_seconds";
pub const APPEND_CONFLICTS: &str = "flowlytix_append_conflicts_total";
pub const COMMAND_RETRIES: &str = "flowlytix_command_retries_total";
pub const AGGREGATE_CACHE_HITS: &str = "flowlytix_aggregate_cache_hits_total";
pub const AGGREGATE_CACHE_MISSES: &str = "flowlytix_aggregate_cache_misses_total";
pub const EVENTS_PUBLISHED: &str = "flowlytix_publisher_events_published_total";
pub const PUBLISH_ERRORS: &str = "flowlytix_publisher_errors_total";
pub const PUBLISHER_POSITION: &str = "flowlytix_publisher_position";
pub const PROJECTOR_APPLIED: &str = "flowlytix_projector_events_applied_total";
pub const PROJECTOR_SKIPPED: &str = "flowlytix_projector_events_skipped_total";
pub const PROJECTOR_GAPS: &str = "flowlytix_projector_gaps_total";
pub const PROJECTOR_PARKED: &str = "flowlytix_projector_events_parked_total";
pub const PROJECTOR_ERRORS: &str = "flowlytix_projector_errors_total";
pub const PROJECTOR_BATCH: &str = "flowlytix_projector_batch_events";
pub const PROJECTOR_LAG_SECONDS: &str = "flowlytix_projector_lag_seconds";
pub const VALIDATIONS: &str = "flowlytix_license_validations_total";
pub const ACTIVATIONS: &str = "flowlytix_license_activations_total";
pub const DEACTIVATIONS: &str = "flowlytix_license_deactivations_total";
pub const TOKEN_REFRESHES: &str = "flowlytix_license_token_refreshes_total";
pub const RATE_LIMITED: &str = "flowlytix_rate_limited_requests_total";
pub const LICENSE_CACHE_HITS: &str = "flowlytix_license_cache_hits_total";
pub const LICENSE_CACHE_MISSES: &str = "flowlytix_license_cache_misses_total";
pub const BUILD_INFO: &str = "flowlytix_build_info";
pub const WEBHOOK_ATTEMPTS: &str = "flowlytix_webhook_delivery_attempts_total";
pub const WEBHOOK_ATTEMPT_DURATION: &str = "flowlytix_webhook_delivery_duration_seconds";
pub const WEBHOOK_AUTO_DISABLED: &str = "flowlytix_webhook_endpoints_auto_disabled_total";
pub const DEADLINE_NOTICES: &str = "flowlytix_deadline_notices_total";
pub const DEADLINE_SCAN_ERRORS: &str = "flowlytix_deadline_scan_errors_total";
pub const LEASE_EXPIRIES: &str = "flowlytix_lease_expiries_total";
pub const HEARTBEATS: &str = "flowlytix_license_heartbeats_total";

/// The deadline notices, by the event type that records each.
pub const DEADLINE_NOTICE_TYPES: &[&str] = &[
    "SubscriptionExpiringSoon",
    "SubscriptionExpired",
    "SubscriptionGraceEnded",
];

/// What became of a webhook attempt: `delivered`, `retry` (failed, tried again later) or
/// `given_up` (failed, the retry schedule ran out).
pub const WEBHOOK_OUTCOMES: &[&str] = &["delivered", "retry", "given_up"];

/// The aggregate types, so that their conflict series exist (at 0) before the first one.
const AGGREGATES: &[&str] = &[
    <flowlytix_aggregates::Subscription as cqrs_es::Aggregate>::TYPE,
    <flowlytix_aggregates::AdminUser as cqrs_es::Aggregate>::TYPE,
];

pub(super) fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status class"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by method, route template and status class"
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now");
    describe_counter!(
        COMMANDS,
        "Command lists run on an aggregate, by aggregate, command and outcome"
    );
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Time to load, decide and append a command list, by aggregate, command and outcome"
    );
    describe_counter!(
        APPEND_CONFLICTS,
        "Appends refused because another writer took the sequence first"
    );
    describe_counter!(
        COMMAND_RETRIES,
        "Command lists decided again after an append conflict"
    );
    describe_counter!(
        AGGREGATE_CACHE_HITS,
        "Commands and loads served from the in-memory aggregate cache"
    );
    describe_counter!(
        AGGREGATE_CACHE_MISSES,
        "Commands and loads that read the aggregate from the store"
    );
    describe_counter!(
        EVENTS_PUBLISHED,
        "Committed events handed to the bus by this instance's publisher"
    );
    describe_counter!(
        PUBLISH_ERRORS,
        "Publisher batches the bus refused (retried)"
    );
    describe_gauge!(
        PUBLISHER_POSITION,
        "Global log position of the last event this instance published"
    );
    describe_counter!(
        PROJECTOR_APPLIED,
        "Events a projector applied on this instance"
    );
    describe_counter!(
        PROJECTOR_SKIPPED,
        "Events a projector skipped as already applied (redeliveries)"
    );
    describe_counter!(
        PROJECTOR_GAPS,
        "Events a projector sent back to wait for an earlier event of their aggregate"
    );
    describe_counter!(
        PROJECTOR_PARKED,
        "Events a projector parked in dead_letters on this instance"
    );
    describe_counter!(
        PROJECTOR_ERRORS,
        "Projection transactions that failed (their events are retried)"
    );
    describe_histogram!(PROJECTOR_BATCH, "Events per projection batch");
    describe_gauge!(PROJECTOR_LAG_SECONDS, Unit::Seconds, "Age of the last event a projector applied when it applied it; 0 when it has applied every event");
    describe_counter!(VALIDATIONS, "License validations, by result code");
    describe_counter!(
        ACTIVATIONS,
        "Device activations, by outcome (ok or the problem code)"
    );
    describe_counter!(
        DEACTIVATIONS,
        "Device deactivations by client apps, by outcome"
    );
    describe_counter!(TOKEN_REFRESHES, "License token refreshes, by outcome");
    describe_counter!(RATE_LIMITED, "Requests refused by the rate limiter");
    describe_counter!(
        LICENSE_CACHE_HITS,
        "Validations answered from the license cache"
    );
    describe_counter!(
        LICENSE_CACHE_MISSES,
        "Validations that read the license read model"
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts made by this instance, by outcome"
    );
    describe_histogram!(
        WEBHOOK_ATTEMPT_DURATION,
        Unit::Seconds,
        "Time from sending a webhook delivery to the receiver's answer (or the failure)"
    );
    describe_counter!(
        WEBHOOK_AUTO_DISABLED,
        "Webhook endpoints this instance disabled because their deliveries kept failing"
    );
    describe_counter!(
        DEADLINE_NOTICES,
        "Deadline notices this instance recorded, by type (the event type)"
    );
    describe_counter!(
        DEADLINE_SCAN_ERRORS,
        "Deadline passes that failed or left a subscription undecided (it is tried again)"
    );
    describe_counter!(
        LEASE_EXPIRIES,
        "Lease expiries this instance recorded (culled, or expired to free a seat)"
    );
    describe_counter!(
        HEARTBEATS,
        "License heartbeats, by outcome: renewed (no event), revived, dead, refused"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels say which build this is");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "git_commit" => env!("FLOWLYTIX_GIT_COMMIT")).set(1.0);
    // Series that should read 0 rather than be missing until their first occurrence.
    for name in [
        RATE_LIMITED,
        PUBLISH_ERRORS,
        EVENTS_PUBLISHED,
        LICENSE_CACHE_HITS,
        LICENSE_CACHE_MISSES,
        WEBHOOK_AUTO_DISABLED,
        DEADLINE_SCAN_ERRORS,
    ] {
        counter!(name).absolute(0);
    }
    for notice in DEADLINE_NOTICE_TYPES {
        counter!(DEADLINE_NOTICES, "type" => *notice).absolute(0);
    }
    for outcome in WEBHOOK_OUTCOMES {
        counter!(WEBHOOK_ATTEMPTS, "outcome" => *outcome).absolute(0);
    }
    for aggregate in AGGREGATES {
        for name in [APPEND_CONFLICTS, COMMAND_RETRIES] {
            counter!(name, "aggregate" => *aggregate).absolute(0);
        }
    }
    // And each projector's, before its first event.
    for projector in flowlytix_projections::streaming_projectors() {
        for name in [PROJECTOR_APPLIED, PROJECTOR_PARKED, PROJECTOR_ERRORS] {
            counter!(name, "projector" => projector.name()).absolute(0);
        }
    }
}

pub fn http_request(method: &'static str, route: String, status: &'static str, took: Duration) {
    let labels = [
        Label::from_static_parts("method", method),
        Label::new("route", route),
        Label::from_static_parts("status", status),
    ];
    counter!(HTTP_REQUESTS, labels.iter()).increment(1);
    histogram!(HTTP_DURATION, labels.iter()).record(took.as_secs_f64());
}

pub fn http_in_flight(change: f64) {
    gauge!(HTTP_IN_FLIGHT).increment(change);
}

pub fn command(
    aggregate: &'static str,
    command: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let labels = [
        ("aggregate", aggregate),
        ("command", command),
        ("outcome", outcome),
    ];
    counter!(COMMANDS, &labels).increment(1);
    histogram!(COMMAND_DURATION, &labels).record(took.as_secs_f64());
}

pub fn append_conflict(aggregate: &'static str) {
    counter!(APPEND_CONFLICTS, "aggregate" => aggregate).increment(1);
}

pub fn command_retry(aggregate: &'static str) {
    counter!(COMMAND_RETRIES, "aggregate" => aggregate).increment(1);
}

pub fn aggregate_cache(aggregate: &'static str, hit: bool) {
    let name = if hit {
        AGGREGATE_CACHE_HITS
    } else {
        AGGREGATE_CACHE_MISSES
    };
    counter!(name, "aggregate" => aggregate).increment(1);
}

pub fn published(events: usize, last_position: i64) {
    counter!(EVENTS_PUBLISHED).increment(events as u64);
    gauge!(PUBLISHER_POSITION).set(last_position as f64);
}

pub fn publish_failed() {
    counter!(PUBLISH_ERRORS).increment(1);
}

/// What one committed projection batch came to: its size, each event's outcome, and how old
/// its last applied event was when it was applied (the time lag Eventuous reports).
pub fn projected(projector: &'static str, records: &[EventRecord], outcomes: &[Outcome]) {
    histogram!(PROJECTOR_BATCH, "projector" => projector).record(records.len() as f64);
    let count = |wanted: Outcome| outcomes.iter().filter(|o| **o == wanted).count() as u64;
    for (name, outcome) in [
        (PROJECTOR_APPLIED, Outcome::Applied),
        (PROJECTOR_SKIPPED, Outcome::Skipped),
        (PROJECTOR_GAPS, Outcome::Gap),
        (PROJECTOR_PARKED, Outcome::Parked),
    ] {
        let n = count(outcome);
        if n > 0 {
            counter!(name, "projector" => projector).increment(n);
        }
    }
    let last_applied = records
        .iter()
        .zip(outcomes)
        .rev()
        .find(|(_, outcome)| **outcome == Outcome::Applied);
    if let Some((record, _)) = last_applied {
        let age = (Utc::now() - record.recorded_at)
            .to_std()
            .unwrap_or_default();
        gauge!(PROJECTOR_LAG_SECONDS, "projector" => projector).set(age.as_secs_f64());
    }
}

pub fn projector_caught_up(projector: &'static str) {
    gauge!(PROJECTOR_LAG_SECONDS, "projector" => projector).set(0.0);
}

pub fn projection_failed(projector: &'static str) {
    counter!(PROJECTOR_ERRORS, "projector" => projector).increment(1);
}

pub fn event_parked(projector: &'static str) {
    counter!(PROJECTOR_PARKED, "projector" => projector).increment(1);
}

pub fn validation(code: &'static str) {
    counter!(VALIDATIONS, "code" => code).increment(1);
}

pub fn activation(outcome: &'static str) {
    counter!(ACTIVATIONS, "outcome" => outcome).increment(1);
}

pub fn deactivation(outcome: &'static str) {
    counter!(DEACTIVATIONS, "outcome" => outcome).increment(1);
}

pub fn token_refresh(outcome: &'static str) {
    counter!(TOKEN_REFRESHES, "outcome" => outcome).increment(1);
}

/// Called for every refusal by a rate limit, with its budget (`sign_in`, `licensing`,
/// `sign_in_account`).
pub fn rate_limited(budget: &'static str) {
    counter!(RATE_LIMITED, "budget" => budget).increment(1);
}

pub fn license_cache(hit: bool) {
    counter!(if hit {
        LICENSE_CACHE_HITS
    } else {
        LICENSE_CACHE_MISSES
    })
    .increment(1);
}

/// One webhook attempt, its outcome (one of [`WEBHOOK_OUTCOMES`]) and how long it took.
pub fn webhook_attempt(outcome: &'static str, took: Duration) {
    counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
    histogram!(WEBHOOK_ATTEMPT_DURATION).record(took.as_secs_f64());
}

pub fn webhook_endpoint_auto_disabled() {
    counter!(WEBHOOK_AUTO_DISABLED).increment(1);
}

/// A deadline notice recorded: `notice` is its event type.
pub fn deadline_notice(notice: String) {
    counter!(DEADLINE_NOTICES, "type" => notice).increment(1);
}

pub fn deadline_scan_failed() {
    counter!(DEADLINE_SCAN_ERRORS).increment(1);
}

pub fn lease_expired() {
    counter!(LEASE_EXPIRIES).increment(1);
}

/// One heartbeat: `renewed`, `revived`, `dead` or `refused`.
pub fn heartbeat(outcome: &'static str) {
    counter!(HEARTBEATS, "outcome" => outcome).increment(1);
}
