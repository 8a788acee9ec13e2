-- The event store: postgres-es writes the first seven columns by name; the last three are
-- filled by defaults and serve the publisher (commit-order tailing) and auditors.
create table events (
    aggregate_type  text not null,
    aggregate_id    text not null,
    sequence        bigint not null check (sequence >= 0),
    event_type      text not null,
    event_version   text not null,
    payload         json not null,
    metadata        json not null,
    -- insertion order; commit order is (tx_id, global_position) below the xmin horizon
    global_position bigint generated always as identity,
    tx_id           xid8 not null default pg_current_xact_id(),
    recorded_at     timestamptz not null default now(),
    primary key (aggregate_type, aggregate_id, sequence)
);

create unique index events_global_position on events (global_position);
create index events_tx_order on events (tx_id, global_position);

-- Lookups the licensing API needs before a read model exists: license key hash and device
-- id to subscription. Expression indexes keep them exact and cheap.
create index events_license_key_hash on events ((payload -> event_type ->> 'key_hash'))
    where event_type in ('LicenseKeyIssued', 'LicenseKeyRegenerated');
create index events_device_id on events ((payload -> event_type ->> 'device_id'))
    where event_type = 'DeviceActivated';

-- Events are kept forever: refuse updates and deletes at the database level.
create function events_are_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'events are append-only';
end;
$$;

create trigger events_append_only before update or delete on events
    for each statement execute function events_are_append_only();
