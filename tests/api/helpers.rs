//! `spawn_app()`: a real server on a random port, on a fresh database, with a signed-in
//! admin. Logs of every app in this test binary are captured for secret scans.
//!
//! One suite, two backends: `FLOWLYTIX_TEST_BACKEND=sqlite` (the default: a fresh SQLite
//! file and the in-process bus) or `postgres` (a fresh PostgreSQL database at
//! `TEST_DATABASE_URL` and a stream of its own on the NATS at `TEST_NATS_URL`).
//! `scripts/test` runs both passes.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use flowlytix_server::store::Db;
use flowlytix_server::Config;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

mod client;
pub use client::ApiClient;

pub const ADMIN_EMAIL: &str = "root@flowlytix.test";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend of this test run (`FLOWLYTIX_TEST_BACKEND`).
pub fn backend() -> Backend {
    match std::env::var("FLOWLYTIX_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// For tests of what only PostgreSQL + NATS have (JetStream, several instances, the xid8
/// horizon): true, after saying so once, when this run is on SQLite.
pub fn skip_unless_postgres() -> bool {
    static SAID: OnceLock<()> = OnceLock::new();
    if backend() == Backend::Postgres {
        return false;
    }
    SAID.get_or_init(|| {
        eprintln!(
            "note: the PostgreSQL + NATS tests (read_side) pass trivially on the SQLite backend; \
             `scripts/test` runs them with FLOWLYTIX_TEST_BACKEND=postgres"
        )
    });
    true
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Log lines of all servers in this process, for the "no secret in the logs" checks.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Spans of the traces that tests start themselves (a request with a sampled
/// `traceparent`), from the server's own tracing-to-OpenTelemetry layer, kept in memory.
static SPANS: OnceLock<opentelemetry_sdk::trace::InMemorySpanExporter> = OnceLock::new();

fn capture_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CapturedWriter(buffer.clone());
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        // Only traces a test started are recorded: the other tests' spans cost nothing.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
                opentelemetry_sdk::trace::Sampler::AlwaysOff,
            )))
            .build();
        let _ = SPANS.set(exporter);
        let _ = tracing_subscriber::registry()
            // The server's own crates at trace level: the secret scans read every line
            // they can write.
            .with(tracing_subscriber::EnvFilter::new(
                "debug,flowlytix_server=trace,flowlytix_projections=trace,hyper=info,h2=info,rustls=info",
            ))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_ansi(false),
            )
            .with(flowlytix_server::telemetry::traces::layer(&provider))
            .try_init();
        // The provider lives as long as the test binary.
        std::mem::forget(provider);
        buffer
    });
}

/// Every span recorded so far of the trace `trace_id` (32 hex digits).
pub fn spans_of_trace(trace_id: &str) -> Vec<opentelemetry_sdk::trace::SpanData> {
    SPANS
        .get()
        .expect("spawn_app installs the span capture")
        .get_finished_spans()
        .unwrap_or_default()
        .into_iter()
        .filter(|span| span.span_context.trace_id().to_string() == trace_id)
        .collect()
}

pub fn captured_logs() -> String {
    let buffer = LOGS.get().expect("spawn_app installs the log capture");
    String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Creates an empty database for this run's backend and returns its URL.
pub async fn fresh_database_url() -> String {
    match backend() {
        Backend::Postgres => fresh_database().await,
        Backend::Sqlite => {
            let dir =
                std::env::temp_dir().join(format!("flowlytix-test-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("create a temporary directory");
            format!("sqlite://{}", dir.join("flowlytix.db").display())
        }
    }
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("flowlytix_test_{}", Uuid::new_v4().simple());
    let server = server_url();
    let mut connection = PgConnection::connect(&server)
        .await
        .expect("PostgreSQL must be running (see README)");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut connection)
        .await
        .expect("create test database");
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base)
        .to_owned();
    format!("{base}/{name}")
}

pub fn test_config(
    database_url: &str,
    key_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url.into()),
        ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        (
            "SECRET_KEY".into(),
            "test-secret-key-that-is-long-enough-0123456789".into(),
        ),
        // Tests send bursts from one address; the limit has a test of its own.
        ("RATE_LIMIT_PER_MINUTE".into(), "0".into()),
        (
            "PRIVATE_KEY_PATH".into(),
            key_dir.join("private.pem").display().to_string(),
        ),
        (
            "PUBLIC_KEY_PATH".into(),
            key_dir.join("public.pem").display().to_string(),
        ),
    ]);
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config is valid")
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

/// Test streams are left on the shared NATS when a run ends; the next run removes them
/// (once, before it names its first stream: see `NatsNames::unique`).
async fn remove_streams_of_earlier_runs() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let Ok(Ok(client)) = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            async_nats::connect(nats_url().as_str()),
        )
        .await
        else {
            return;
        };
        let jetstream = async_nats::jetstream::new(client);
        let names: Vec<String> = {
            use futures::TryStreamExt;
            jetstream
                .stream_names()
                .try_collect()
                .await
                .unwrap_or_default()
        };
        for name in names
            .into_iter()
            .filter(|n| n.starts_with("FLOWLYTIX_TEST_"))
        {
            let _ = jetstream.delete_stream(&name).await;
        }
    })
    .await;
}

/// Starts an app on an existing database and key directory, signed in as the bootstrap admin.
pub async fn start_app(
    database_url: &str,
    key_dir: &std::path::Path,
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

    pub async fn activate(&self, license_key: &str, fingerprint: &str) -> Response {
        self.anon(reqwest::Method::POST, "/api/v1/licensing/activate")
            .json(&json!({"license_key": license_key, "device": {"fingerprint": fingerprint, "name": format!("device {fingerprint}"), "platform": "linux"}}))
            .send()
            .await
            .expect("activate request")
    }

    pub async fn validate(&self, body: Value) -> Value {
        let response = self
            .anon(reqwest::Method::POST, "/api/v1/licensing/validate")
            .json(&body)
            .send()
            .await
            .expect("validate");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("validate body")
    }

    /// How many rows the events table holds (to prove a refused request wrote nothing).
    pub async fn event_count(&self) -> i64 {
        self.scalar("select count(*) from events").await
    }
}

/// Asserts a problem+json response with the given status and code; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Sends a request that must be refused with the given problem, and asserts that it wrote
/// no event. Returns the problem body.
pub async fn assert_refused(
    app: &TestApp,
    request: RequestBuilder,
    status: StatusCode,
    code: &str,
) -> Value {
    let before = app.event_count().await;
    let response = request.send().await.expect("request");
    let body = assert_problem(response, status, code).await;
    assert_eq!(
        app.event_count().await,
        before,
        "a refused request ({status} {code}) wrote events"
    );
    body
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

impl TestApp {
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

// ---------------------------------------------------------------------------------------
// The read side on a real NATS JetStream: apps with their own stream, a second instance on
// the same database and stream, waiting for the read models to converge, private
// nats-servers that a test may stop, and the real server binary as a child process that a
// test may SIGKILL.

/// The NATS every test shares (`TEST_NATS_URL`, default `nats://127.0.0.1:4222`).
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A NATS URL with a stream name and subject prefix of its own, so that tests sharing one
/// NATS never see each other's events.
#[derive(Clone, Debug)]
pub struct NatsNames {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

impl NatsNames {
    /// Names of a stream of its own. The first call of a run first removes the streams that
    /// earlier runs left on the shared NATS, so that this removal never hits a stream a test
    /// of this run has started to use (a server child process creates its stream itself).
    pub async fn unique(url: &str) -> Self {
        remove_streams_of_earlier_runs().await;
        let id = Uuid::new_v4().simple().to_string();
        Self {
            url: url.to_owned(),
            stream: format!("FLOWLYTIX_TEST_{id}"),
            subject_prefix: format!("flowlytix-test.{id}"),
        }
    }

    /// NATS_URL, NATS_STREAM and NATS_SUBJECT_PREFIX.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NATS_URL".into(), self.url.clone()),
            ("NATS_STREAM".into(), self.stream.clone()),
            ("NATS_SUBJECT_PREFIX".into(), self.subject_prefix.clone()),
        ]
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.url.as_str())
            .await
            .expect("connect to NATS");
        async_nats::jetstream::new(client)
    }

    /// The stream's state (messages, last sequence).
    pub async fn stream_state(&self) -> async_nats::jetstream::stream::State {
        let mut stream = self
            .jetstream()
            .await
            .get_stream(&self.stream)
            .await
            .expect("the test stream exists");
        stream.info().await.expect("stream info").state.clone()
    }

    /// Best effort: removes the stream once a test is done with it.
    pub async fn delete_stream(&self) {
        if let Ok(Ok(client)) = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            async_nats::connect(self.url.as_str()),
        )
        .await
        {
            let _ = async_nats::jetstream::new(client)
                .delete_stream(&self.stream)
                .await;
        }
    }
}

/// An app on NATS JetStream (its own stream), and the names of that stream.
pub struct NatsTestApp {
    pub app: TestApp,
    pub nats: NatsNames,
}

impl std::ops::Deref for NatsTestApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl NatsTestApp {
    /// Stops this app's publisher and projectors and deletes its stream.
    pub async fn teardown(&self) {
        self.app.server.stop_background_tasks();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.nats.delete_stream().await;
    }
}

/// Like `spawn_app`, with the read side on the shared NATS (`TEST_NATS_URL`).
pub async fn spawn_app_on_nats() -> NatsTestApp {
    spawn_app_on_nats_at(&nats_url()).await
}

/// Like `spawn_app`, with the read side on the NATS at `url` and a stream of its own.
pub async fn spawn_app_on_nats_at(url: &str) -> NatsTestApp {
    let nats = NatsNames::unique(url).await;
    let database_url = fresh_database().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let app = start_app(&database_url, &key_dir, Some(nats.clone()), &[]).await;
    NatsTestApp { app, nats }
}

/// Another in-process instance on an existing database, key directory and NATS stream,
/// signed in as the bootstrap admin.
pub async fn spawn_nats_instance(
    database_url: &str,
    key_dir: &std::path::Path,
    nats: &NatsNames,
) -> TestApp {
    start_app(database_url, key_dir, Some(nats.clone()), &[]).await
}

/// Signs in as the bootstrap admin at `base`; returns the access token.
pub async fn login_at(client: &Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login request");
    assert_eq!(response.status(), StatusCode::OK, "login at {base}");
    let body: Value = response.json().await.expect("login body");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// `GET /health` of the server at `base` (any status code).
pub async fn health_at(client: &Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health request");
    response.json().await.expect("health body")
}

/// Whether a `/health` body says that the read models have caught up with the log: every
/// projector's lag is 0 and the publisher's backlog is 0.
pub fn read_models_converged(health: &Value) -> bool {
    let projectors = health["projectors"].as_array().cloned().unwrap_or_default();
    health["database"] == "ok"
        && !projectors.is_empty()
        && projectors.iter().all(|p| p["lag"].as_i64() == Some(0))
        && health["publisher"]["backlog"].as_i64() == Some(0)
}

/// Polls `/health` at `base` until the read models have converged; panics with the last
/// answer after `within`. Returns the converged health.
pub async fn wait_for_read_models_at(
    client: &Client,
    base: &str,
    within: std::time::Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let health = match client.get(format!("{base}/health")).send().await {
            Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null),
            Err(error) => json!({"request_error": error.to_string()}),
        };
        if read_models_converged(&health) {
            return health;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("the read models did not converge within {within:?}; last /health: {health}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl TestApp {
    /// Waits (at most 20 s) until every projector has applied every event.
    pub async fn wait_for_read_models(&self) -> Value {
        self.api()
            .wait_for_read_models(std::time::Duration::from_secs(20))
            .await
    }

    pub async fn health(&self) -> Value {
        self.api().health().await
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a random port")
        .local_addr()
        .expect("local address")
        .port()
}

/// A nats-server of the test's own (JetStream on, its own storage directory), which the
/// test may stop and start again on the same port and directory. Never the shared one.
pub struct NatsServer {
    child: Option<tokio::process::Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl NatsServer {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("flowlytix-test-nats-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the NATS storage directory");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
        };
        server.run().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and storage directory; returns once it accepts
    /// connections.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "the NATS server is already running");
        let binary =
            std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let log = std::fs::File::create(
            self.dir
                .join(format!("nats-{}.log", Uuid::new_v4().simple())),
        )
        .expect("create the NATS log");
        let child = tokio::process::Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Stops it the way an operator does (SIGTERM: JetStream flushes its storage), falling
    /// back to SIGKILL; returns once the process is gone.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The environment of a server child process: a database, signing keys, the first admin
/// and optionally a NATS stream. `PORT` and `HOST` are set per start.
pub fn server_env(
    database_url: &str,
    key_dir: &std::path::Path,
    nats: Option<&NatsNames>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        (
            "SECRET_KEY".into(),
            "test-secret-key-that-is-long-enough-0123456789".into(),
        ),
        // Tests send bursts from one address; the limit has a test of its own.
        ("RATE_LIMIT_PER_MINUTE".into(), "0".into()),
        (
            "PRIVATE_KEY_PATH".into(),
            key_dir.join("private.pem").display().to_string(),
        ),
        (
            "PUBLIC_KEY_PATH".into(),
            key_dir.join("public.pem").display().to_string(),
        ),
        ("RUST_LOG".into(), "info".into()),
    ];
    if let Some(nats) = nats {
        env.extend(nats.env());
    }
    env
}

/// The real `flowlytix` binary serving on a port of its own, killed when dropped (also when
/// the test panics).
pub struct ServerProcess {
    child: tokio::process::Child,
    pub address: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `flowlytix serve` with exactly `env` (plus HOST and PORT) and waits until it
    /// answers `/livez`.
    pub async fn start(env: &[(String, String)]) -> Self {
        let port = free_port();
        let work_dir =
            std::env::temp_dir().join(format!("flowlytix-test-server-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&work_dir).expect("create the server's working directory");
        let log = work_dir.join("server.log");
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowlytix"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            // No `.env` of the workspace: the environment above is the whole configuration.
            .current_dir(&work_dir)
            .stdout(log_file.try_clone().expect("clone the log handle"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the flowlytix binary");
        let mut server = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_until_live().await;
        server
    }

    async fn wait_until_live(&mut self) {
        let client = Client::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the server exited at start-up ({status}); its log:\n{}",
                    self.log_text()
                );
            }
            let live = client.get(format!("{}/livez", self.address)).send().await;
            if live.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "the server did not come up within 30 s; its log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown code runs. Returns once the process is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, as an orchestrator stops a server; waits (at most `within`) for it to exit
    /// and returns how it exited.
    pub async fn terminate(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        self.signal("TERM", within).await
    }

    /// Sends `signal` (`TERM`, `INT`, …); waits (at most `within`) for the server to exit
    /// and returns how it exited.
    pub async fn signal(
        &mut self,
        signal: &str,
        within: std::time::Duration,
    ) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the server is running");
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid}");
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => panic!(
                "the server did not exit within {within:?} of SIG{signal}; its log:\n{}",
                self.log_text()
            ),
        }
    }

    /// The server's working directory (relative paths such as `LOG_FILE` start there).
    pub fn work_dir(&self) -> &std::path::Path {
        self.log
            .parent()
            .expect("the log is in the working directory")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
