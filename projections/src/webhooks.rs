//! The webhook queue's input: `rm_webhook_endpoints` (the endpoints as WebhookEndpoint
//! events describe them, without their secrets) and `webhook_deliveries`, one row per
//! committed event and endpoint that wants it.
//!
//! This projector is fed by the bus like the read models (its own durable consumer on
//! JetStream, the in-process bus when embedded), so it sees every event once, in
//! per-aggregate order, after it committed. It is not part of a replay: its rows are a queue
//! and a log of what was sent, not a view that can be rebuilt.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::QueryBuilder;
use uuid::Uuid;

use flowlytix_eventstore::log::{columns, StoredEvent};
use flowlytix_eventstore::{with_conn, Conn, EventRecord};

use crate::projector::{ApplyFuture, Due, ProjectionError, Projector};

pub const WEBHOOK_ENDPOINT_TYPE: &str = "WebhookEndpoint";

/// Derives delivery ids; any fixed UUID, never to change (it makes the ids stable).
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x3d6b_55a0_8f1e_4b7c_a1d2_77c0_de11_4e60);

/// The delivery of one event to one endpoint: the same pair always gets the same id, which
/// is also the `webhook-id` receivers de-duplicate by.
pub fn delivery_id(endpoint_id: Uuid, record: &EventRecord) -> Uuid {
    Uuid::new_v5(
        &DELIVERY_NAMESPACE,
        format!("{endpoint_id}:{}", record.message_id()).as_bytes(),
    )
}

/// What a receiver gets: `{id, type, created_at, data}`, `data` being the event as the feed
/// shows it (secrets redacted).
pub fn delivery_body(record: &EventRecord) -> String {
    json!({
        "id": record.message_id(),
        "type": record.event_type,
        "created_at": record.recorded_at,
        "data": record,
    })
    .to_string()
}

pub struct WebhooksProjector;

/// The part of WebhookEndpoint events this projector reads (their sealed secrets arrive
/// redacted and are not needed here).
// The variants are the event types' names, as stored.
#[allow(clippy::enum_variant_names)]
#[derive(Deserialize)]
enum EndpointEvent {
    WebhookEndpointCreated {
        url: String,
        event_types: Option<Vec<String>>,
        description: Option<String>,
        enabled: bool,
        at: DateTime<Utc>,
    },
    WebhookEndpointUpdated {
        url: String,
        event_types: Option<Vec<String>>,
        description: Option<String>,
        at: DateTime<Utc>,
    },
    WebhookEndpointSecretRotated {
        at: DateTime<Utc>,
    },
    WebhookEndpointDisabled {
        reason: String,
        at: DateTime<Utc>,
    },
    WebhookEndpointEnabled {
        at: DateTime<Utc>,
    },
    WebhookEndpointDeleted {
        at: DateTime<Utc>,
    },
}

/// An endpoint that may receive deliveries, as far as matching needs.
struct Receiver {
    id: Uuid,
    event_types: Option<Vec<String>>,
    live: bool,
}

impl Receiver {
    fn wants(&self, event_type: &str) -> bool {
        self.live
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == event_type))
    }
}

impl Projector for WebhooksProjector {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_webhook_endpoints"]
    }

    fn apply_batch<'a>(&'a self, mut db: Conn<'a>, events: &'a [Due<'a>]) -> ApplyFuture<'a> {
        Box::pin(async move {
            take_turn(db.reborrow()).await?;
            let mut receivers = load_receivers(db.reborrow()).await?;
            let now = Utc::now();
            let mut queued: Vec<(Uuid, &EventRecord)> = Vec::new();
            let mut caught_up: Vec<(Uuid, EventRecord)> = Vec::new();
            for (index, due) in events.iter().enumerate() {
                let record = due.record;
                if record.aggregate_type == WEBHOOK_ENDPOINT_TYPE {
                    let live_before = live_ids(&receivers);
                    apply_endpoint_event(db.reborrow(), record, &mut receivers).await?;
                    for receiver in receivers.iter().filter(|r| !live_before.contains(&r.id)) {
                        let missed = missed_by(
                            db.reborrow(),
                            self.name(),
                            receiver,
                            record,
                            &events[..index],
                        );
                        caught_up.extend(missed.await?);
                    }
                }
                // An endpoint gets the events committed while it is enabled (its own
                // creation included), as it is at that point of the stream.
                for receiver in receivers.iter().filter(|r| r.wants(&record.event_type)) {
                    queued.push((receiver.id, record));
                }
            }
            queued.extend(caught_up.iter().map(|(id, record)| (*id, record)));
            for chunk in queued.chunks(500) {
                queue(db.reborrow(), chunk, now).await?;
            }
            Ok(())
        })
    }
}

/// Any fixed number: the lock that makes this projector's batches take turns on PostgreSQL.
const TURN_LOCK: i64 = 0x0066_6c6f_7768_6f6f;

/// Instances share this projector's consumer, so a batch holding an endpoint's creation and
/// one holding the events right after it may be applied at once, each blind to the other.
/// Taking turns makes the later one see the earlier one's commit: either the endpoint is
/// there when the events are matched, or the events are there (as applied) when the
/// endpoint goes live, and it catches up on them. SQLite's single writer takes turns
/// already.
async fn take_turn(db: Conn<'_>) -> Result<(), sqlx::Error> {
    if let Conn::Postgres(c) = db {
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(TURN_LOCK)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// What an endpoint that went live at `record` missed: the events after it in the stream
/// that were applied before it, in batches already committed or `earlier_here` in this one.
async fn missed_by(
    db: Conn<'_>,
    projector: &str,
    receiver: &Receiver,
    record: &EventRecord,
    earlier_here: &[Due<'_>],
) -> Result<Vec<(Uuid, EventRecord)>, sqlx::Error> {
    let applied = applied_events_after(db, projector, record.position).await?;
    Ok(applied
        .into_iter()
        .chain(earlier_here.iter().map(|due| due.record.clone()))
        .filter(|later| later.position > record.position && receiver.wants(&later.event_type))
        .map(|later| (receiver.id, later))
        .collect())
}

/// The events after `position` that `projector` has already applied (its per-aggregate
/// versions cover them), in position order: what a projector that must see the stream in
/// global order (webhooks) applied ahead of an event it is applying now.
pub async fn applied_events_after(
    conn: Conn<'_>,
    projector: &str,
    position: i64,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    let sql = format!(
        "select {} from events where global_position > $2 and exists (
             select 1 from projection_versions v where v.projector = $1
                 and v.aggregate_type = events.aggregate_type
                 and v.aggregate_id = events.aggregate_id and v.version >= events.sequence)
         order by global_position",
        columns(conn.dialect())
    );
    let rows: Vec<StoredEvent> = with_conn!(conn, c => {
        sqlx::query_as(&sql).bind(projector).bind(position).fetch_all(&mut *c).await?
    });
    Ok(rows.into_iter().map(EventRecord::from).collect())
}

fn live_ids(receivers: &[Receiver]) -> Vec<Uuid> {
    receivers.iter().filter(|r| r.live).map(|r| r.id).collect()
}

async fn load_receivers(db: Conn<'_>) -> Result<Vec<Receiver>, sqlx::Error> {
    let rows: Vec<(Uuid, Option<String>)> = with_conn!(db, c => {
        sqlx::query_as("select id, event_types from rm_webhook_endpoints where enabled and not deleted")
            .fetch_all(&mut *c)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|(id, event_types)| Receiver {
            id,
            event_types: event_types.and_then(|t| serde_json::from_str(&t).ok()),
            live: true,
        })
        .collect())
}

async fn apply_endpoint_event(
    db: Conn<'_>,
    record: &EventRecord,
    receivers: &mut Vec<Receiver>,
) -> Result<(), ProjectionError> {
    let event: EndpointEvent = record
        .decode_as()
        .map_err(|e| ProjectionError::BadPayload(record.message_id(), e))?;
    let Ok(id) = Uuid::parse_str(&record.aggregate_id) else {
        return Ok(());
    };
    let types_json = |types: &Option<Vec<String>>| {
        types
            .as_ref()
            .map(|t| serde_json::to_string(t).unwrap_or_default())
    };
    let version = record.sequence;
    let position = receivers.iter().position(|r| r.id == id);
    with_conn!(db, c => {
        match &event {
            EndpointEvent::WebhookEndpointCreated { url, event_types, description, enabled, at } => {
                sqlx::query(
                    "insert into rm_webhook_endpoints (id, url, event_types, description, enabled,
                         disabled_reason, deleted, created_at, updated_at, version)
                     values ($1, $2, $3, $4, $5, $6, false, $7, $7, $8) on conflict (id) do nothing",
                )
                .bind(id)
                .bind(url)
                .bind(types_json(event_types))
                .bind(description)
                .bind(*enabled)
                .bind((!enabled).then_some("admin"))
                .bind(*at)
                .bind(version)
                .execute(&mut *c)
                .await?;
                if position.is_none() {
                    receivers.push(Receiver { id, event_types: event_types.clone(), live: *enabled });
                }
            }
            EndpointEvent::WebhookEndpointUpdated { url, event_types, description, at } => {
                sqlx::query(
                    "update rm_webhook_endpoints set url = $2, event_types = $3, description = $4,
                         updated_at = $5, version = $6 where id = $1",
                )
                .bind(id)
                .bind(url)
                .bind(types_json(event_types))
                .bind(description)
                .bind(*at)
                .bind(version)
                .execute(&mut *c)
                .await?;
                if let Some(receiver) = position.map(|i| &mut receivers[i]) {
                    receiver.event_types = event_types.clone();
                }
            }
            EndpointEvent::WebhookEndpointSecretRotated { at } => {
                sqlx::query("update rm_webhook_endpoints set updated_at = $2, version = $3 where id = $1")
                    .bind(id)
                    .bind(*at)
                    .bind(version)
                    .execute(&mut *c)
                    .await?;
            }
            EndpointEvent::WebhookEndpointDisabled { reason, at } => {
                sqlx::query(
                    "update rm_webhook_endpoints set enabled = false, disabled_reason = $2,
                         updated_at = $3, version = $4 where id = $1",
                )
                .bind(id)
                .bind(reason)
                .bind(*at)
                .bind(version)
                .execute(&mut *c)
                .await?;
                receivers.retain(|r| r.id != id);
            }
            EndpointEvent::WebhookEndpointEnabled { at } => {
                sqlx::query(
                    "update rm_webhook_endpoints set enabled = true, disabled_reason = null,
                         updated_at = $2, version = $3 where id = $1",
                )
                .bind(id)
                .bind(*at)
                .bind(version)
                .execute(&mut *c)
                .await?;
                let event_types: Option<String> = sqlx::query_scalar(
                    "select event_types from rm_webhook_endpoints where id = $1 and not deleted",
                )
                .bind(id)
                .fetch_optional(&mut *c)
                .await?
                .flatten();
                if position.is_none() {
                    receivers.push(Receiver {
                        id,
                        event_types: event_types.and_then(|t| serde_json::from_str(&t).ok()),
                        live: true,
                    });
                }
            }
            EndpointEvent::WebhookEndpointDeleted { at } => {
                sqlx::query(
                    "update rm_webhook_endpoints set deleted = true, updated_at = $2, version = $3
                     where id = $1",
                )
                .bind(id)
                .bind(*at)
                .bind(version)
                .execute(&mut *c)
                .await?;
                // Its queue ends with it: the dispatcher only claims deliveries of live
                // endpoints, so these would otherwise stay pending for ever. (One in flight
                // now stays canceled when its attempt is recorded.)
                sqlx::query(
                    "update webhook_deliveries set status = 'canceled'
                     where endpoint_id = $1 and status = 'pending'",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
                receivers.retain(|r| r.id != id);
            }
        }
    });
    Ok(())
}

/// Queues deliveries; one that is already queued (a redelivered event) is left as it is.
async fn queue(
    db: Conn<'_>,
    deliveries: &[(Uuid, &EventRecord)],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let ready = now.timestamp_millis();
    with_conn!(db, c => {
        let mut insert = QueryBuilder::new(
            "insert into webhook_deliveries (id, endpoint_id, position, aggregate_type,
                 aggregate_id, sequence, event_id, event_type, body, next_attempt_ms, created_at) ",
        );
        insert.push_values(deliveries, |mut row, (endpoint_id, record)| {
            row.push_bind(delivery_id(*endpoint_id, record))
                .push_bind(*endpoint_id)
                .push_bind(record.position)
                .push_bind(&record.aggregate_type)
                .push_bind(&record.aggregate_id)
                .push_bind(record.sequence)
                .push_bind(record.message_id())
                .push_bind(&record.event_type)
                .push_bind(delivery_body(record))
                .push_bind(ready)
                .push_bind(now);
        });
        insert.push(" on conflict (id) do nothing");
        insert.build().execute(&mut *c).await?;
    });
    Ok(())
}
