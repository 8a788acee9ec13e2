-- Products, entitlements and policies (the licensing catalogue) as their events describe
-- them, kept by the `catalogue` projector; and the policy a subscription follows.

create table rm_products (
    id         uuid primary key,
    code       text not null,
    name       text not null,
    url        text,
    metadata   jsonb not null,
    deleted    boolean not null default false,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    version    bigint not null
);

create table rm_entitlements (
    id         uuid primary key,
    code       text not null,
    name       text not null,
    deleted    boolean not null default false,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    version    bigint not null
);

create table rm_policies (
    id           uuid primary key,
    product_id   uuid not null,
    product_code text not null,
    code         text not null,
    name         text not null,
    max_devices  int not null,
    -- JSON array of entitlement codes.
    entitlements jsonb not null,
    -- Every setting, as the last event that set them carries them (PolicySettings).
    settings     jsonb not null,
    archived     boolean not null default false,
    created_at   timestamptz not null,
    updated_at   timestamptz not null,
    version      bigint not null
);
create index rm_policies_product on rm_policies (product_id);

-- Kept by the `subscriptions` projector. The effective values of a subscription that
-- follows a policy are read through rm_policies, so that a policy change needs no row
-- change here.
alter table rm_subscriptions add column policy_id uuid;
-- JSON array of the fields the subscription sets itself (`max_devices`, `expires_at`, ...).
alter table rm_subscriptions add column overrides jsonb not null default '[]';
create index rm_subscriptions_policy on rm_subscriptions (policy_id) where deleted_at is null;

-- A policy change is announced as it commits, like a license change (0008): every
-- instance reloads that policy's terms for validation and commands at once.
create function events_policy_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('flowlytix_policy_changed', new.aggregate_id);
    return null;
end;
$$;

create trigger events_policy_changed after insert on events
    for each row
    when (new.aggregate_type = 'Policy')
    execute function events_policy_changed();
