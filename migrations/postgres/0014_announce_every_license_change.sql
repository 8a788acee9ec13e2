-- Validation now trusts a cached license for long while it follows these notices, so they
-- announce every change to an existing license, not only those that stop it validating: a
-- new plan, features, details or device name shows on every instance at once too. Left
-- unannounced, because they are the busy ones and cannot make a valid verdict wrong:
-- creation and a first key (no instance has cached a license before it has a key), token
-- issues (only last_seen_at moves), and activations (a refused verdict is re-checked
-- against the store after half a second anyway; a NOTIFY serialises its transaction's
-- commit with every other notifying one).
drop trigger events_license_changed on events;

create trigger events_license_changed after insert on events
    for each row
    when (new.aggregate_type = 'Subscription' and new.event_type not in (
        'SubscriptionCreated', 'LicenseKeyIssued', 'DeviceActivated', 'LicenseTokenIssued'))
    execute function events_license_changed();
