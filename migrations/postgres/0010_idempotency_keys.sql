-- What `Idempotency-Key` remembers: one row per caller and key, for 24 hours. Neither the
-- key nor its caller is kept in clear (`key_hash` is the SHA-256 of both), and the first
-- response is sealed (XChaCha20-Poly1305 with a key derived from SECRET_KEY): it can hold a
-- full license key or a license token. Times are milliseconds since the Unix epoch, from
-- the server's clock, so that one set of queries serves both backends.
create table idempotency_keys (
    key_hash        text primary key,
    -- SHA-256 of method, route, path, query and body: a different request is refused.
    request_hash    text not null,
    -- The attempt that holds the key while its request runs; null once answered.
    claim_id        text,
    -- While in flight: when a crashed attempt's claim may be taken over by a retry.
    lease_until     bigint,
    -- Once answered: the first response's status and its sealed headers and body.
    response_status integer,
    response_nonce  bytea,
    response_sealed bytea,
    created_at      bigint not null,
    expires_at      bigint not null
);
create index idempotency_keys_by_expiry on idempotency_keys (expires_at);
