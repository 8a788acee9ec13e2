-- The publisher no longer listens for a NOTIFY on every append: a NOTIFY makes PostgreSQL
-- serialize the commits of all notifying transactions (a database-wide lock held from
-- before the commit record is written until it is flushed), which capped appends at about
-- one per fsync. The appending process wakes its own publisher; other instances' appends
-- are found by the publisher's 50 ms poll.
drop trigger if exists events_notify on events;
drop function if exists events_notify();
