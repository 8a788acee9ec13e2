-- Admin sign-in sessions. A session is one refresh-token family: each refresh rotates the
-- token, and presenting a token that was already used revokes the whole family.
create table admin_sessions (
    id             uuid primary key,
    admin_id       uuid not null,
    created_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    revoked_at     timestamptz,
    revoked_reason text
);

create index admin_sessions_admin on admin_sessions (admin_id);

create table admin_refresh_tokens (
    -- SHA-256 of the token: the token itself is never stored
    token_hash text primary key,
    session_id uuid not null references admin_sessions (id),
    issued_at  timestamptz not null default now(),
    used_at    timestamptz
);

create index admin_refresh_tokens_session on admin_refresh_tokens (session_id);
