-- The identity of this event store, made once with the schema. It is stamped on the NATS
-- stream and on every message, so that a server never publishes to, or projects from, a
-- stream that belongs to another store (two deployments sharing one NATS).
create table store_identity (
    id         int primary key default 1 check (id = 1),
    store_id   uuid not null,
    created_at timestamptz not null default now()
);
insert into store_identity (store_id) values (gen_random_uuid());
