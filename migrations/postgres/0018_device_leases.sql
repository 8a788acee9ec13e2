-- Leases of devices under policies with heartbeats or floating seats. Heartbeats renew them
-- here, not in the event log (100 000 devices beating every 10 minutes would add 14 million
-- events a day): the events record only who holds a seat (taken, expired, revived,
-- released), and the `subscriptions` projector copies those here. A row is one lease of a
-- device: `taken_at` (the instant of the event that took it) tells it from the next, so
-- that a late or replayed event never undoes a newer lease or a heartbeat. Not a read model:
-- a replay leaves it alone, since heartbeats are nowhere else.
create table device_leases (
    device_id         uuid primary key,
    subscription_id   uuid not null,
    taken_at          timestamptz not null,
    -- The deadline in force (null: a floating seat without heartbeats, kept until checked in).
    expires_at        timestamptz,
    last_heartbeat_at timestamptz,
    borrowed_until    timestamptz,
    -- False once the events record its expiry or the device's deactivation.
    live              boolean not null default true
);

-- The culler's sweep: live leases by deadline, so a pass reads only the expired ones.
create index device_leases_due on device_leases (expires_at) where live;
-- The renewals a subscription command carries.
create index device_leases_subscription on device_leases (subscription_id);
