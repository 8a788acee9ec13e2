-- What `Idempotency-Key` remembers (see postgres/0010).
create table idempotency_keys (
    key_hash        text primary key,
    request_hash    text not null,
    claim_id        text,
    lease_until     integer,
    response_status integer,
    response_nonce  blob,
    response_sealed blob,
    created_at      integer not null,
    expires_at      integer not null
);
create index idempotency_keys_by_expiry on idempotency_keys (expires_at);
