-- Webhooks: the endpoints as the delivery queue sees them, the queue itself, and the log of
-- every delivery attempt. The endpoints' source of truth is their events (the
-- WebhookEndpoint aggregate); their signing secrets are only there, sealed.

-- Kept by the `webhooks` projector from WebhookEndpoint events, for listing and matching.
create table rm_webhook_endpoints (
    id              uuid primary key,
    url             text not null,
    -- JSON array of event type names; null: every event type.
    event_types     text,
    description     text,
    enabled         boolean not null,
    disabled_reason text,
    deleted         boolean not null default false,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    version         bigint not null
);

-- One row per event and matching endpoint, written by the `webhooks` projector (the id is
-- derived from both, so a redelivered bus message cannot queue it twice). Times that the
-- workers compare are milliseconds since the epoch, alike on both backends.
create table webhook_deliveries (
    id               uuid primary key,
    endpoint_id      uuid not null,
    position         bigint not null,
    aggregate_type   text not null,
    aggregate_id     text not null,
    sequence         bigint not null,
    event_id         text not null,
    event_type       text not null,
    -- The exact JSON body, fixed when queued: every attempt signs the same bytes.
    body             text not null,
    -- pending, delivered, or failed (the retry schedule ran out).
    status           text not null default 'pending',
    attempts         integer not null default 0,
    -- The attempt count when the retry schedule last began (0, or at a manual redeliver).
    schedule_start   integer not null default 0,
    next_attempt_ms  bigint not null,
    -- A worker's lease on the delivery while it attempts it.
    claimed_until_ms bigint not null default 0,
    last_error       text,
    created_at       timestamptz not null,
    delivered_at     timestamptz
);
create index webhook_deliveries_pending on webhook_deliveries
    (endpoint_id, aggregate_type, aggregate_id, position) where status = 'pending';
create index webhook_deliveries_ready on webhook_deliveries (next_attempt_ms)
    where status = 'pending';

-- Every attempt, kept for the delivery log.
create table webhook_attempts (
    id          bigserial primary key,
    delivery_id uuid not null references webhook_deliveries (id) on delete cascade,
    endpoint_id uuid not null,
    attempt     integer not null,
    status_code integer,
    latency_ms  bigint not null,
    error       text,
    at          timestamptz not null
);
create index webhook_attempts_by_endpoint on webhook_attempts (endpoint_id, id);

-- Since when an endpoint's deliveries have failed without a success in between (null: it
-- is not failing), for disabling it after WEBHOOK_DISABLE_AFTER.
create table webhook_endpoint_health (
    endpoint_id   uuid primary key,
    failing_since timestamptz,
    last_success  timestamptz
);

-- The webhooks projector starts where the log is now: events committed before webhooks
-- existed can match no endpoint, and without this an existing aggregate's next event would
-- look to it like one whose predecessors are missing.
insert into projection_versions (projector, aggregate_type, aggregate_id, version)
select 'webhooks', aggregate_type, aggregate_id, max(sequence)
from events
group by aggregate_type, aggregate_id;
