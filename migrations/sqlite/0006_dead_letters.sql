-- Events a projector could not read or apply, after their retries (see postgres/0006).
create table dead_letters (
    projector      text not null,
    aggregate_type text not null,
    aggregate_id   text not null,
    sequence       integer not null,
    position       integer not null,
    event_type     text not null,
    error          text not null,
    parked_at      text not null,
    primary key (projector, aggregate_type, aggregate_id, sequence)
);
