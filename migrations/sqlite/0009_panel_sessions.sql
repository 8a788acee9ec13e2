-- Admin panel (browser) sessions: see the PostgreSQL migration.
create table panel_sessions (
    token_hash       text primary key,
    admin_session_id blob not null references admin_sessions (id),
    role             text not null,
    created_at       text not null,
    last_seen_at     text not null
);

create index panel_sessions_admin_session on panel_sessions (admin_session_id);
