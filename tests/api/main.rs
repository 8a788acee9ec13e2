//! Integration tests: the real server on a random port, a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // each test module uses its own part of the helpers
mod helpers;

mod access_log;
mod admin_auth;
mod bad_input;
mod browser;
mod catalogue;
mod client_addresses;
mod client_offline;
mod command_line;
mod concurrency;
mod deadlines;
mod deleted_subscriptions;
mod devices;
mod docs;
mod durability;
mod effective_status;
mod end_to_end;
mod error_reports;
mod event_log;
mod fixture_log;
mod idempotency;
mod key_regeneration;
mod lease_views;
mod leases;
mod license_tokens;
mod logs;
mod long_history;
mod metrics;
mod panel;
mod panel_catalogue;
mod panel_details;
mod panel_inputs;
mod panel_webhooks;
mod poison;
mod policies;
mod protocol;
mod read_models;
mod read_side;
mod secrets;
mod security_headers;
mod shutdown;
mod slow_clients;
mod subscriptions;
mod switches;
mod traces;
mod unstorable;
mod webhooks;
