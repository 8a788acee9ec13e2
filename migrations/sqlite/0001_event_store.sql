-- The event store: sqlite-es writes the aggregate columns by name; the others are filled by
-- defaults. SQLite has one writer at a time, so positions assigned inside the writing
-- transaction are already in commit order.
create table events (
    global_position integer primary key autoincrement,
    aggregate_type  text not null,
    aggregate_id    text not null,
    sequence        integer not null check (sequence >= 0),
    event_type      text not null,
    event_version   text not null,
    payload         text not null,
    metadata        text not null,
    recorded_at     text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    unique (aggregate_type, aggregate_id, sequence)
);

create index events_license_key_hash on events ((payload -> event_type ->> 'key_hash'))
    where event_type in ('LicenseKeyIssued', 'LicenseKeyRegenerated');
create index events_device_id on events ((payload -> event_type ->> 'device_id'))
    where event_type = 'DeviceActivated';

-- Events are kept forever.
create trigger events_no_update before update on events
begin
    select raise(abort, 'events are append-only');
end;

create trigger events_no_delete before delete on events
begin
    select raise(abort, 'events are append-only');
end;
