-- The read side (see the PostgreSQL migration for what each table is for).

create table publisher_checkpoint (
    id              integer primary key check (id = 1),
    tx_id           text not null,
    global_position integer not null,
    updated_at      text
);
insert into publisher_checkpoint (id, tx_id, global_position) values (1, '0', 0);

create table projector_checkpoints (
    projector       text primary key,
    stream_sequence integer not null default 0,
    events_applied  integer not null default 0,
    updated_at      text
);

create table projection_versions (
    projector      text not null,
    aggregate_type text not null,
    aggregate_id   text not null,
    version        integer not null,
    primary key (projector, aggregate_type, aggregate_id)
);

create table rm_subscriptions (
    id                 blob primary key,
    customer_email     text not null,
    customer_name      text not null,
    organization       text,
    plan               text not null,
    status             text not null,
    max_devices        integer not null,
    active_devices     integer not null default 0,
    features           text not null,
    metadata           text not null,
    starts_at          text not null,
    expires_at         text,
    trial_ends_at      text,
    license_key_hash   text,
    license_key_prefix text,
    created_at         text not null,
    updated_at         text not null,
    canceled_at        text,
    deleted_at         text,
    version            integer not null
);

create unique index rm_subscriptions_key_hash on rm_subscriptions (license_key_hash);
create index rm_subscriptions_status on rm_subscriptions (status) where deleted_at is null;
create index rm_subscriptions_plan on rm_subscriptions (plan) where deleted_at is null;
create index rm_subscriptions_expires on rm_subscriptions (expires_at) where deleted_at is null;
create index rm_subscriptions_created on rm_subscriptions (created_at);

create table rm_devices (
    id                   blob primary key,
    subscription_id      blob not null,
    fingerprint_hash     text not null,
    name                 text,
    platform             text,
    os_version           text,
    app_version          text,
    hostname             text,
    notes                text,
    status               text not null,
    activated_at         text not null,
    deactivated_at       text,
    deactivation_reason  text,
    last_seen_at         text,
    subscription_deleted boolean not null default false
);

create index rm_devices_subscription on rm_devices (subscription_id);
create index rm_devices_status on rm_devices (status) where not subscription_deleted;

create table rm_daily_counts (
    day    text not null,
    metric text not null,
    value  integer not null,
    primary key (day, metric)
);
