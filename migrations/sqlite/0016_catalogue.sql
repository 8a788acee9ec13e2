-- Kept in step with postgres/0016 (an embedded server is the only instance: it needs no
-- policy change notices).

create table rm_products (
    id         blob primary key,
    code       text not null,
    name       text not null,
    url        text,
    metadata   text not null,
    deleted    boolean not null default false,
    created_at text not null,
    updated_at text not null,
    version    integer not null
);

create table rm_entitlements (
    id         blob primary key,
    code       text not null,
    name       text not null,
    deleted    boolean not null default false,
    created_at text not null,
    updated_at text not null,
    version    integer not null
);

create table rm_policies (
    id           blob primary key,
    product_id   blob not null,
    product_code text not null,
    code         text not null,
    name         text not null,
    max_devices  integer not null,
    entitlements text not null,
    settings     text not null,
    archived     boolean not null default false,
    created_at   text not null,
    updated_at   text not null,
    version      integer not null
);
create index rm_policies_product on rm_policies (product_id);

alter table rm_subscriptions add column policy_id blob;
alter table rm_subscriptions add column overrides text not null default '[]';
create index rm_subscriptions_policy on rm_subscriptions (policy_id) where deleted_at is null;
