-- Changes that can make a license stop validating are announced the moment they commit
-- (NOTIFY is delivered at commit, and only then), so every instance refreshes its
-- validation cache from the write side at once, with or without NATS and the read models.
create function events_license_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('flowlytix_license_changed', new.aggregate_id);
    return null;
end;
$$;

create trigger events_license_changed after insert on events
    for each row
    when (new.aggregate_type = 'Subscription' and new.event_type in (
        'SubscriptionSuspended', 'SubscriptionCanceled', 'SubscriptionDeleted',
        'SubscriptionResumed', 'SubscriptionPeriodChanged', 'SubscriptionDeviceLimitChanged',
        'LicenseKeyRegenerated', 'DeviceDeactivated'))
    execute function events_license_changed();
