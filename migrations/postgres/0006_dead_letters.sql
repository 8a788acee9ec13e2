-- Events a projector could not read or apply, after their retries. The projector moved on
-- past each (its aggregate's version includes it), so nothing waits behind it; the event
-- itself stays in `events` and in the feed.
create table dead_letters (
    projector      text not null,
    aggregate_type text not null,
    aggregate_id   text not null,
    sequence       bigint not null,
    position       bigint not null,
    event_type     text not null,
    error          text not null,
    parked_at      timestamptz not null,
    primary key (projector, aggregate_type, aggregate_id, sequence)
);
