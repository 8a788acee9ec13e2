//! What the suites share, one file per concern:
//!
//! - `app`: `spawn_app()`, a real server on a random port, on a fresh database, with a
//!   signed-in admin, and what a test asks of it;
//! - `database`: the backend of this run and fresh databases on it;
//! - `settings`: the configuration every test server gets;
//! - `capture`: the logs and trace spans of every in-process server, for the secret scans
//!   and the trace tests;
//! - `problems`: asserting problem+json answers and refusals that wrote nothing;
//! - `client`: `ApiClient`, HTTP to any server, and `/health` polling;
//! - `licensing`: the licensing endpoints as a device's application calls them;
//! - `nats`: apps on NATS JetStream with a stream of their own;
//! - `process`: child processes a test may stop: the server binary and a private
//!   nats-server.
//!
//! One suite, two backends: `FLOWLYTIX_TEST_BACKEND=sqlite` (the default: a fresh SQLite
//! file and the in-process bus) or `postgres` (a fresh PostgreSQL database at
//! `TEST_DATABASE_URL` and a stream of its own on the NATS at `TEST_NATS_URL`).
//! `scripts/test` runs both passes.

mod app;
mod capture;
mod catalogue;
mod client;
mod database;
mod licensing;
mod nats;
mod problems;
mod process;
mod settings;

// The whole helper API, whether or not a suite names it today (as for dead code in
// main.rs: each suite uses its own part).
#[allow(unused_imports)]
pub use self::{
    app::{count_events_of_type, spawn_app, spawn_app_with, start_app, TestApp},
    capture::{captured_logs, spans_of_trace},
    catalogue::{product_with_policies, with_fields},
    client::{health_at, login_at, read_models_converged, wait_for_read_models_at, ApiClient},
    database::{backend, fresh_database, fresh_database_url, skip_unless_postgres, Backend},
    licensing::{Answer, Licensing},
    nats::{
        nats_url, spawn_app_on_nats, spawn_app_on_nats_at, spawn_nats_instance, NatsNames,
        NatsTestApp,
    },
    problems::{assert_problem, assert_refused},
    process::{free_port, NatsServer, ServerProcess},
    settings::{server_env, test_config, ADMIN_EMAIL, ADMIN_PASSWORD},
};
