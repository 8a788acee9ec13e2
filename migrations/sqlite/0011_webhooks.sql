-- Webhooks (see the PostgreSQL migration for what each table is for).

create table rm_webhook_endpoints (
    id              blob primary key,
    url             text not null,
    event_types     text,
    description     text,
    enabled         boolean not null,
    disabled_reason text,
    deleted         boolean not null default false,
    created_at      text not null,
    updated_at      text not null,
    version         integer not null
);

create table webhook_deliveries (
    id               blob primary key,
    endpoint_id      blob not null,
    position         integer not null,
    aggregate_type   text not null,
    aggregate_id     text not null,
    sequence         integer not null,
    event_id         text not null,
    event_type       text not null,
    body             text not null,
    status           text not null default 'pending',
    attempts         integer not null default 0,
    schedule_start   integer not null default 0,
    next_attempt_ms  integer not null,
    claimed_until_ms integer not null default 0,
    last_error       text,
    created_at       text not null,
    delivered_at     text
);
create index webhook_deliveries_pending on webhook_deliveries
    (endpoint_id, aggregate_type, aggregate_id, position) where status = 'pending';
create index webhook_deliveries_ready on webhook_deliveries (next_attempt_ms)
    where status = 'pending';

create table webhook_attempts (
    id          integer primary key autoincrement,
    delivery_id blob not null references webhook_deliveries (id) on delete cascade,
    endpoint_id blob not null,
    attempt     integer not null,
    status_code integer,
    latency_ms  integer not null,
    error       text,
    at          text not null
);
create index webhook_attempts_by_endpoint on webhook_attempts (endpoint_id, id);

create table webhook_endpoint_health (
    endpoint_id   blob primary key,
    failing_since text,
    last_success  text
);

-- The webhooks projector starts where the log is now: events committed before webhooks
-- existed can match no endpoint, and without this an existing aggregate's next event would
-- look to it like one whose predecessors are missing.
insert into projection_versions (projector, aggregate_type, aggregate_id, version)
select 'webhooks', aggregate_type, aggregate_id, max(sequence)
from events
group by aggregate_type, aggregate_id;
