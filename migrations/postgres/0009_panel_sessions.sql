-- Admin panel (browser) sessions. Each rides on an admin session (admin_sessions): that
-- row's expiry is the absolute lifetime and its revocation (sign-out, disabling, a role or
-- password change) ends the browser session too. Only a SHA-256 hash of the cookie's
-- session id is stored.
create table panel_sessions (
    token_hash       text primary key,
    admin_session_id uuid not null references admin_sessions (id),
    -- the role at sign-in (a role change revokes the admin session)
    role             text not null,
    created_at       timestamptz not null,
    -- for the idle lifetime
    last_seen_at     timestamptz not null
);

create index panel_sessions_admin_session on panel_sessions (admin_session_id);
