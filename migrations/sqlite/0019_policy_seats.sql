-- Kept in step with postgres/0019.
-- Seats in use, for the dashboard's floating seats per policy, copied by the `subscriptions`
-- projector from the lease events' `seats_in_use` (an activation without a lease holds a
-- seat per active device). `holds_seat` is what lets a deactivation give back a seat only
-- when its device held one: a floating device whose lease expired already gave it back.
alter table rm_subscriptions add column seats_in_use integer not null default 0;
alter table rm_devices add column holds_seat boolean not null default false;

-- Seats in use under each policy: `in_use` at the end of the day (or now, on the last row),
-- `peak` the most held at once that day. A day without a change has no row: it held what
-- the row before it ended with.
create table rm_policy_seats (
    policy_id blob not null,
    day       text not null,
    in_use    integer not null,
    peak      integer not null,
    primary key (policy_id, day)
);

-- What the rows already say, for histories from before leases (every active device holds a
-- seat); `flowlytix replay` rebuilds all three from the events.
update rm_devices set holds_seat = (status = 'active');
update rm_subscriptions set seats_in_use = active_devices where deleted_at is null;
insert into rm_policy_seats (policy_id, day, in_use, peak)
    select policy_id, date('now'), sum(seats_in_use), sum(seats_in_use)
    from rm_subscriptions
    where deleted_at is null and policy_id is not null
    group by policy_id;
