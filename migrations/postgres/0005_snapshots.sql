-- Snapshots of aggregates, written by the executor every so many events, so that loading an
-- aggregate that no instance holds in memory reads its latest snapshot and the events after
-- it instead of its whole history. Only the latest snapshot of each aggregate is kept. A
-- snapshot only repeats what the events say: any row may be deleted at any time, and one
-- that no longer decodes (the aggregate's state changed shape) is ignored and rebuilt.
create table snapshots (
    aggregate_type text not null,
    aggregate_id   text not null,
    -- the sequence and global position of the last event folded into the payload
    last_sequence  bigint not null check (last_sequence > 0),
    last_position  bigint not null,
    -- the executor's snapshot format: a snapshot of another format is ignored
    format         integer not null,
    payload        json not null,
    taken_at       timestamptz not null default now(),
    primary key (aggregate_type, aggregate_id)
);
