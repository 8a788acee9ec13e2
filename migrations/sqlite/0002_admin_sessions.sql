-- Admin sign-in sessions: one refresh-token family each (see the PostgreSQL migration).
create table admin_sessions (
    id             blob primary key,
    admin_id       blob not null,
    created_at     text not null,
    expires_at     text not null,
    revoked_at     text,
    revoked_reason text
);

create index admin_sessions_admin on admin_sessions (admin_id);

create table admin_refresh_tokens (
    token_hash text primary key,
    session_id blob not null references admin_sessions (id),
    issued_at  text not null,
    used_at    text
);

create index admin_refresh_tokens_session on admin_refresh_tokens (session_id);
