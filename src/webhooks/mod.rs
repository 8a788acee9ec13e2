//! Webhooks: the admin operations on endpoints behind `/api/v1/webhooks` (the handlers only
//! parse and respond), their signing secrets, and the dispatcher that delivers the queue.
//!
//! Flow: a committed event reaches the `webhooks` projector through the bus, which queues a
//! delivery per matching endpoint (`projections::webhooks`); the dispatcher of every
//! instance claims due deliveries (`store::webhook_queue`), signs and POSTs them, and logs
//! each attempt; failures retry on `WEBHOOK_RETRY_SCHEDULE`.

pub mod dispatcher;
mod manage;
mod payload;
pub mod secrets;
pub mod signing;
pub mod ssrf;
#[cfg(test)]
mod tests;

pub use manage::{CreateWebhookRequest, UpdateWebhookRequest, WebhookError, WithSecret};

use flowlytix_aggregates::{
    WebhookEndpoint, WebhookEndpointCommand, WebhookEndpointError, WebhookEndpointId,
};
use flowlytix_projections::Db;

use crate::config::WebhookSettings;
use crate::store::{Committed, EventMetadata, ExecuteError, Executor};
use secrets::SecretBoxKey;

/// Webhook endpoints: runs their commands, keeps the key their secrets are sealed with, and
/// the delivery queue and policy that the admin operations (`manage`) and the dispatcher use.
pub struct Webhooks {
    // The state holds the sealed secret: like admins' password hashes, it stays in the
    // events alone, never in snapshots.
    executor: Executor<WebhookEndpoint>,
    pub secrets: SecretBoxKey,
    db: Db,
    settings: WebhookSettings,
}

impl Webhooks {
    pub fn new(db: Db, server_secret: &[u8], settings: WebhookSettings) -> Self {
        Self {
            executor: Executor::without_snapshots(db.clone()),
            secrets: SecretBoxKey::derive(server_secret),
            db,
            settings,
        }
    }

    pub async fn run(
        &self,
        id: WebhookEndpointId,
        command: WebhookEndpointCommand,
        metadata: EventMetadata,
    ) -> Result<Committed<WebhookEndpoint>, ExecuteError<WebhookEndpointError>> {
        self.executor
            .execute(&id.to_string(), vec![command], metadata, None)
            .await
    }

    /// The endpoint as its events have it now, and its version.
    pub async fn load(
        &self,
        id: WebhookEndpointId,
    ) -> Result<(WebhookEndpoint, u64), ExecuteError<WebhookEndpointError>> {
        self.executor.load(&id.to_string()).await
    }
}
