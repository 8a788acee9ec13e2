//! A real webhook receiver: an axum server on a random port that records every request,
//! and can fail on purpose or hang. Signatures are checked with the `standardwebhooks`
//! crate, an implementation independent of the server's.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub raw: Bytes,
    pub body: Value,
}

impl Received {
    pub fn webhook_id(&self) -> String {
        self.header("webhook-id")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    /// Whether `secret` signed this delivery, as a Standard Webhooks library sees it.
    pub fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .expect("a whsec_ secret")
            .verify(&self.raw, &self.headers)
            .is_ok()
    }
}

#[derive(Default)]
struct Behaviour {
    received: Mutex<Vec<Received>>,
    /// Requests still to answer 500.
    fail_next: AtomicUsize,
    fail_always: AtomicBool,
    hang: AtomicBool,
    /// How long the next request waits before it is answered.
    delay_next: Mutex<Option<Duration>>,
    /// Answers 307 to this URL when set.
    redirect_to: Mutex<Option<String>>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    behaviour: Arc<Behaviour>,
}

impl Receiver {
    pub async fn start() -> Self {
        let behaviour = Arc::new(Behaviour::default());
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(behaviour.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, behaviour }
    }

    /// Answers the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.behaviour.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn fail_always(&self, on: bool) {
        self.behaviour.fail_always.store(on, Ordering::SeqCst);
    }

    /// Never answers (until the sender gives up).
    pub fn hang(&self) {
        self.behaviour.hang.store(true, Ordering::SeqCst);
    }

    /// Answers every request with a redirect to `url`.
    pub fn redirect_to(&self, url: &str) {
        *self
            .behaviour
            .redirect_to
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(url.to_owned());
    }

    /// Answers the next request only after `delay` (as a slow receiver would).
    pub fn delay_next(&self, delay: Duration) {
        *self
            .behaviour
            .delay_next
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(delay);
    }

    /// Answers new requests again.
    pub fn answer(&self) {
        self.behaviour.hang.store(false, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.behaviour
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The deliveries by first arrival, one per `webhook-id`.
    pub fn unique(&self) -> Vec<Received> {
        let mut seen = std::collections::HashSet::new();
        self.received()
            .into_iter()
            .filter(|r| seen.insert(r.webhook_id()))
            .collect()
    }
}

async fn receive(
    State(behaviour): State<Arc<Behaviour>>,
    headers: HeaderMap,
    raw: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let redirect = behaviour
        .redirect_to
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    behaviour
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received { headers, raw, body });
    let delay = behaviour
        .delay_next
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if behaviour.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let failing = behaviour.fail_always.load(Ordering::SeqCst)
        || behaviour
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if let Some(location) = redirect {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response();
    }
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Polls `condition` every 50 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
