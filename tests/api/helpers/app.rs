//! `spawn_app()`: a real server on a random port, on a fresh database, with a signed-in
//! admin; and what a test asks of it (requests, SQL checks, a second instance).

use std::path::{Path, PathBuf};

use flowlytix_server::store::Db;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::capture::capture_logs;
use super::{
    backend, fresh_database_url, login_at, nats_url, test_config, ApiClient, Backend, NatsNames,
};

/// The server under test and what a test needs to talk to it and inspect its database.
pub struct TestApp {
    pub address: String,
    pub client: Client,
    /// The app's database, for checks in SQL that both backends understand.
    pub db: Db,
    pub database_url: String,
    /// Set on the PostgreSQL backend: for the checks that only make sense there.
    pg_pool: Option<PgPool>,
    /// Set on the PostgreSQL backend: the app's own stream on the shared NATS.
    pub nats_names: Option<NatsNames>,
    pub admin_token: String,
    pub key_dir: PathBuf,
    /// The running application, for what has no HTTP endpoint (such as creating an auditor).
    pub server: flowlytix_server::SharedApp,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a server with extra environment settings (e.g. `LICENSE_TOKEN_TTL`). On the
/// PostgreSQL backend it also gets a stream of its own on the shared NATS.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let database_url = fresh_database_url().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let nats = if backend() == Backend::Postgres && !extra.iter().any(|(k, _)| *k == "NATS_URL") {
        Some(NatsNames::unique(&nats_url()).await)
    } else {
        None
    };
    start_app(&database_url, &key_dir, nats, extra).await
}

/// Starts an app on an existing database and key directory, signed in as the bootstrap admin.
pub async fn start_app(
    database_url: &str,
    key_dir: &Path,
    nats: Option<NatsNames>,
    extra: &[(&str, &str)],
) -> TestApp {
    capture_logs();
    let nats_env = nats.as_ref().map(NatsNames::env).unwrap_or_default();
    let mut settings: Vec<(&str, &str)> = nats_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    settings.extend_from_slice(extra);
    let config = test_config(database_url, key_dir, &settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a random port");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    let server = flowlytix_server::App::start(config)
        .await
        .expect("the server starts");
    tokio::spawn(flowlytix_server::serve_app(
        server.clone(),
        listener,
        std::future::pending(),
    ));
    let db = server.db.clone();
    let pg_pool = match &db {
        Db::Postgres(pool) => Some(pool.clone()),
        Db::Sqlite(_) => None,
    };
    let client = Client::new();
    let admin_token = login_at(&client, &address).await;
    TestApp {
        address,
        client,
        db,
        database_url: database_url.to_owned(),
        pg_pool,
        nats_names: nats,
        admin_token,
        key_dir: key_dir.to_owned(),
        server,
    }
}

impl TestApp {
    /// The PostgreSQL pool, for tests that only run on that backend.
    pub fn pg(&self) -> &PgPool {
        self.pg_pool
            .as_ref()
            .expect("this check needs the PostgreSQL backend")
    }

    /// A single number from SQL that both backends understand.
    pub async fn scalar(&self, sql: &str) -> i64 {
        flowlytix_projections::with_db!(&self.db, pool => {
            sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// How many rows the events table holds (to prove a refused request wrote nothing).
    pub async fn event_count(&self) -> i64 {
        self.scalar("select count(*) from events").await
    }

    /// A client for this app, signed in as the bootstrap admin.
    pub fn api(&self) -> ApiClient {
        ApiClient {
            client: self.client.clone(),
            base: self.address.clone(),
            token: self.admin_token.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.api().url(path)
    }

    /// A request with no credentials.
    pub fn anon(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.api().anon(method, path)
    }

    /// A request as the bootstrap admin.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.api().admin(method, path)
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let response = self
            .anon(reqwest::Method::POST, "/api/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), StatusCode::OK, "login as {email}");
        response.json().await.expect("login body")
    }

    /// Creates a subscription as the admin; returns the response body (with `license_key`).
    pub async fn create_subscription(&self, body: Value) -> Value {
        self.api().create(body).await
    }

    /// A subscription with `max_devices` and sensible defaults.
    pub async fn subscription_with_devices(&self, max_devices: u32) -> Value {
        self.create_subscription(json!({
            "customer_email": "ann@example.com",
            "customer_name": "Ann Example",
            "organization": "Example Ltd",
            "plan": "pro",
            "max_devices": max_devices,
            "features": ["export", "sync"],
        }))
        .await
    }

    /// Waits (at most 20 s) until every projector has applied every event.
    pub async fn wait_for_read_models(&self) -> Value {
        self.api()
            .wait_for_read_models(std::time::Duration::from_secs(20))
            .await
    }

    pub async fn health(&self) -> Value {
        self.api().health().await
    }

    /// Starts a second server on this app's database and signing keys (a second instance
    /// behind the same load balancer); returns its base URL. Admin tokens work on both.
    pub async fn spawn_second_instance(&self) -> String {
        start_app(
            &self.database_url,
            &self.key_dir,
            self.nats_names.clone(),
            &[],
        )
        .await
        .address
    }
}

/// How many events of one type the events table holds.
pub async fn count_events_of_type(app: &TestApp, event_type: &str) -> i64 {
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_scalar("select count(*) from events where event_type = $1")
            .bind(event_type)
            .fetch_one(pool)
            .await
            .expect("count events by type")
    })
}
