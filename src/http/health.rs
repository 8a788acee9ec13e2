//! `GET /health`: the database, the bus, the publisher, each projector's lag (the webhook
//! queue's projector among them) and the webhook queue.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::SharedApp;
use crate::read;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` when the bus is down or publishing fails (commands still work, read
    /// models catch up later); `unavailable` when the database does not answer.
    pub status: &'static str,
    pub version: String,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    pub bus: BusHealth,
    pub publisher: PublisherHealth,
    pub projectors: Vec<ProjectorHealth>,
    /// The webhook queue (absent when it could not be read within 2 s). Receivers' failures
    /// are theirs: they do not make the server `degraded`.
    pub webhooks: Option<WebhooksHealth>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhooksHealth {
    /// Whether this instance delivers (`ENABLE_NOTIFICATIONS`); when off, deliveries queue.
    pub notifications: bool,
    /// Deliveries waiting for an attempt, due or not (of disabled endpoints too).
    pub pending: i64,
    /// Pending deliveries of enabled endpoints whose time has come: a figure that stays
    /// high means the dispatchers cannot keep up.
    pub due: i64,
    /// Endpoints whose deliveries have failed since their last success.
    pub failing_endpoints: i64,
    /// Endpoints the server disabled because their deliveries kept failing.
    pub auto_disabled_endpoints: i64,
}

#[derive(Serialize, ToSchema)]
pub struct BusHealth {
    /// `nats` or `in-process`.
    pub kind: &'static str,
    /// `ok` or `unavailable`.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct PublisherHealth {
    /// Whether this instance holds the publisher lock.
    pub leader: bool,
    /// Committed events not yet published (as last measured by this instance as leader).
    pub backlog: i64,
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectorHealth {
    pub name: String,
    /// Events in the log that this projector has not applied yet.
    pub lag: i64,
    pub events_applied: i64,
    /// Events it could not read or apply, set aside in `dead_letters` after their retries
    /// (they stay in the event log and the feed).
    pub parked: i64,
}

/// Health of the server and what it depends on. 503 only when the database does not answer.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(app): State<SharedApp>) -> (StatusCode, Json<Health>) {
    let projectors =
        tokio::time::timeout(std::time::Duration::from_secs(2), projector_lag(&app)).await;
    let (database_ok, projectors) = match projectors {
        Ok(Ok(projectors)) => (true, projectors),
        _ => (false, vec![]),
    };
    // Bounded on its own: a long queue (a dead receiver's backlog) that is slow to count
    // must not pass for a database that does not answer.
    let webhooks = if database_ok {
        webhooks_health(&app).await
    } else {
        None
    };
    let bus_ok = app.bus.is_connected();
    let status = &app.publisher_status;
    let last_error = status.last_error.lock().ok().and_then(|e| e.clone());
    // Lag is reported, not judged: read models are always a moment behind a write.
    let word = match (database_ok, bus_ok && last_error.is_none()) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let code = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: word,
            version: app.config.version.clone(),
            database: if database_ok { "ok" } else { "unavailable" },
            bus: BusHealth {
                kind: app.bus.name(),
                status: if bus_ok { "ok" } else { "unavailable" },
            },
            publisher: PublisherHealth {
                leader: status.leader.load(Ordering::Relaxed),
                backlog: status.backlog.load(Ordering::Relaxed),
                last_error,
            },
            projectors,
            webhooks,
        }),
    )
}

async fn webhooks_health(app: &SharedApp) -> Option<WebhooksHealth> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let read = read::webhooks::queue_stats(&app.db, now_ms);
    match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
        Ok(Ok(queue)) => Some(WebhooksHealth {
            notifications: app.config.enable_notifications,
            pending: queue.pending,
            due: queue.due,
            failing_endpoints: queue.failing_endpoints,
            auto_disabled_endpoints: queue.auto_disabled_endpoints,
        }),
        _ => None,
    }
}

/// Lag = events in the log minus events the projector has applied.
async fn projector_lag(app: &SharedApp) -> Result<Vec<ProjectorHealth>, sqlx::Error> {
    let total = app.event_count.total(&app.db).await?;
    Ok(
        read::progress::projectors(&app.db, app.config.enable_analytics)
            .await?
            .into_iter()
            .map(|projector| ProjectorHealth {
                name: projector.name.to_owned(),
                lag: (total - projector.events_applied).max(0),
                events_applied: projector.events_applied,
                parked: projector.parked,
            })
            .collect(),
    )
}

/// Liveness: answers without touching anything (the cheapest endpoint; a benchmark's HTTP
/// ceiling).
#[utoipa::path(get, path = "/livez", tag = "ops", responses((status = 200, body = String)))]
async fn live() -> &'static str {
    "ok"
}
