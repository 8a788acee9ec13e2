-- The read side: the publisher's checkpoint, the projectors' bookkeeping and the read
-- models they maintain. Everything here can be rebuilt from the events (`flowlytix replay`).

-- How far the publisher has published, in its (tx_id, global_position) order. One row.
create table publisher_checkpoint (
    id              int primary key default 1 check (id = 1),
    tx_id           xid8 not null,
    global_position bigint not null,
    updated_at      timestamptz not null default now()
);
insert into publisher_checkpoint (tx_id, global_position) values ('0'::xid8, 0);

-- Per projector: the last event applied (for lag and min_position)...
create table projector_checkpoints (
    projector       text primary key,
    stream_sequence bigint not null default 0,
    events_applied  bigint not null default 0,
    updated_at      timestamptz not null default now()
);

-- ...and per aggregate the last sequence applied, so that a redelivered event is skipped
-- and one that arrives before its predecessor is held back.
create table projection_versions (
    projector      text not null,
    aggregate_type text not null,
    aggregate_id   text not null,
    version        bigint not null,
    primary key (projector, aggregate_type, aggregate_id)
);

create table rm_subscriptions (
    id                 uuid primary key,
    customer_email     text not null,
    customer_name      text not null,
    organization       text,
    plan               text not null,
    -- the stored status; `expired` is derived from expires_at / trial_ends_at when read
    status             text not null,
    max_devices        int not null,
    active_devices     int not null default 0,
    features           jsonb not null,
    metadata           jsonb not null,
    starts_at          timestamptz not null,
    expires_at         timestamptz,
    trial_ends_at      timestamptz,
    license_key_hash   text,
    license_key_prefix text,
    created_at         timestamptz not null,
    updated_at         timestamptz not null,
    canceled_at        timestamptz,
    deleted_at         timestamptz,
    version            bigint not null
);

create unique index rm_subscriptions_key_hash on rm_subscriptions (license_key_hash);
create index rm_subscriptions_status on rm_subscriptions (status) where deleted_at is null;
create index rm_subscriptions_plan on rm_subscriptions (plan) where deleted_at is null;
create index rm_subscriptions_expires on rm_subscriptions (expires_at) where deleted_at is null;
create index rm_subscriptions_created on rm_subscriptions (created_at);

create table rm_devices (
    id                  uuid primary key,
    subscription_id     uuid not null,
    fingerprint_hash    text not null,
    name                text,
    platform            text,
    os_version          text,
    app_version         text,
    hostname            text,
    notes               text,
    status              text not null,
    activated_at        timestamptz not null,
    deactivated_at      timestamptz,
    deactivation_reason text,
    last_seen_at        timestamptz,
    subscription_deleted boolean not null default false
);

create index rm_devices_subscription on rm_devices (subscription_id);
create index rm_devices_status on rm_devices (status) where not subscription_deleted;

-- Daily counters: activations, deactivations, subscriptions_created, subscriptions_canceled.
create table rm_daily_counts (
    day    date not null,
    metric text not null,
    value  bigint not null,
    primary key (day, metric)
);

-- Wakes the publisher as soon as events commit (it also polls, in case a notice is lost).
create function events_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('flowlytix_events', '');
    return null;
end;
$$;

create trigger events_notify after insert on events
    for each statement execute function events_notify();

-- The status in force now, as the aggregate's `effective_status` computes it: a usable
-- subscription whose period (or, while trialing, whose trial) has run out is expired.
create function rm_effective_status(status text, expires_at timestamptz, trial_ends_at timestamptz)
returns text language sql stable as $$
    select case
        when status in ('trialing', 'active', 'past_due')
             and (expires_at <= now() or (status = 'trialing' and trial_ends_at <= now()))
        then 'expired'
        else status
    end
$$;
