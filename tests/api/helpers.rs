//! `spawn_app()`: a real server on a random port, on a fresh PostgreSQL database, with a
//! signed-in admin. Logs of every app in this test binary are captured for secret scans.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use flowlytix_server::Config;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "root@flowlytix.test";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// The server under test and what a test needs to talk to it and inspect its database.
pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub pool: PgPool,
    pub admin_token: String,
    pub key_dir: PathBuf,
    /// The running application, for what has no HTTP endpoint (such as creating an auditor).
    pub server: flowlytix_server::SharedApp,
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Log lines of all servers in this process, for the "no secret in the logs" checks.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CapturedWriter(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,rustls=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    });
}

pub fn captured_logs() -> String {
    let buffer = LOGS.get().expect("spawn_app installs the log capture");
    String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("flowlytix_test_{}", Uuid::new_v4().simple());
    let server = server_url();
    let mut connection = PgConnection::connect(&server).await.expect("PostgreSQL must be running (see README)");
    sqlx::query(&format!("create database {name}")).execute(&mut connection).await.expect("create test database");
    let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base).to_owned();
    format!("{base}/{name}")
}

pub fn test_config(database_url: &str, key_dir: &std::path::Path, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url.into()),
        ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ("SECRET_KEY".into(), "test-secret-key-that-is-long-enough-0123456789".into()),
        ("PRIVATE_KEY_PATH".into(), key_dir.join("private.pem").display().to_string()),
        ("PUBLIC_KEY_PATH".into(), key_dir.join("public.pem").display().to_string()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config is valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a server with extra environment settings (e.g. `LICENSE_TOKEN_TTL`).
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    capture_logs();
    let database_url = fresh_database().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let config = test_config(&database_url, &key_dir, extra);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a random port");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    let app = flowlytix_server::App::start(config).await.expect("the server starts");
    tokio::spawn(flowlytix_server::serve_app(app.clone(), listener, std::future::pending()));
    let pool = PgPool::connect(&database_url).await.expect("connect to the test database");
    let client = Client::new();
    let mut app = TestApp { address, client, pool, admin_token: String::new(), key_dir, server: app };
    app.admin_token = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .expect("admin login gives an access token")
        .to_owned();
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request with no credentials.
    pub fn anon(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request as the bootstrap admin.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(&self.admin_token)
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
        let response = self.admin(reqwest::Method::POST, "/api/v1/subscriptions").json(&body).send().await.expect("create");
        let status = response.status();
        let body: Value = response.json().await.expect("create body");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
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

    pub async fn activate(&self, license_key: &str, fingerprint: &str) -> Response {
        self.anon(reqwest::Method::POST, "/api/v1/licensing/activate")
            .json(&json!({"license_key": license_key, "device": {"fingerprint": fingerprint, "name": format!("device {fingerprint}"), "platform": "linux"}}))
            .send()
            .await
            .expect("activate request")
    }

    pub async fn validate(&self, body: Value) -> Value {
        let response = self.anon(reqwest::Method::POST, "/api/v1/licensing/validate").json(&body).send().await.expect("validate");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("validate body")
    }

    /// How many rows the events table holds (to prove a refused request wrote nothing).
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events").fetch_one(&self.pool).await.expect("count events")
    }
}

/// Asserts a problem+json response with the given status and code; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Sends a request that must be refused with the given problem, and asserts that it wrote
/// no event. Returns the problem body.
pub async fn assert_refused(app: &TestApp, request: RequestBuilder, status: StatusCode, code: &str) -> Value {
    let before = app.event_count().await;
    let response = request.send().await.expect("request");
    let body = assert_problem(response, status, code).await;
    assert_eq!(app.event_count().await, before, "a refused request ({status} {code}) wrote events");
    body
}

/// How many events of one type the events table holds.
pub async fn count_events_of_type(pool: &PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("select count(*) from events where event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await
        .expect("count events by type")
}

impl TestApp {
    /// The URL of this app's database, so that another instance can share it.
    pub async fn database_url(&self) -> String {
        let name: String = sqlx::query_scalar("select current_database()").fetch_one(&self.pool).await.expect("database name");
        let server = server_url();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base).to_owned();
        format!("{base}/{name}")
    }

    /// Starts a second server on this app's database and signing keys (a second instance
    /// behind the same load balancer); returns its base URL. Admin tokens work on both.
    pub async fn spawn_second_instance(&self) -> String {
        spawn_instance(&self.database_url().await, &self.key_dir).await
    }
}

/// Starts a server on an existing database and key directory; returns its base URL.
pub async fn spawn_instance(database_url: &str, key_dir: &std::path::Path) -> String {
    capture_logs();
    let config = test_config(database_url, key_dir, &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a random port");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    let app = flowlytix_server::App::start(config).await.expect("the second instance starts");
    tokio::spawn(flowlytix_server::serve_app(app, listener, std::future::pending()));
    address
}
