//! What admins do to webhook endpoints: create, update, rotate the secret, delete, read,
//! and redeliver.

use flowlytix_aggregates::webhook_endpoint::{EndpointChange, EndpointSettings};
use flowlytix_aggregates::{
    WebhookEndpoint, WebhookEndpointCommand, WebhookEndpointError, WebhookEndpointId,
};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ssrf;
use super::Webhooks;
use crate::config::WebhookSettings;
use crate::read::webhooks::{AttemptQuery, AttemptRow};
use crate::store::{webhook_queue, Committed, EventMetadata, ExecuteError};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is refused by this server's delivery policy.
    #[error("{0}")]
    UrlRefused(String),
    #[error("no such webhook endpoint")]
    NotFound,
    #[error("no such delivery for this endpoint")]
    DeliveryNotFound,
    #[error(transparent)]
    Command(#[from] ExecuteError<WebhookEndpointError>),
    #[error(transparent)]
    Read(#[from] sqlx::Error),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: `https://` (plain `http://` only when the server allows
    /// it), no credentials in the URL.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event type names as the feed shows them; null or absent for every type.
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Every field is optional; only those sent change. For `event_types` and `description`, an
/// explicit `null` clears the value (null event types: every type).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// A present field, even `null`, is `Some`; an absent one stays `None` (via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A command's outcome and the signing secret it made: the only time the secret is shown.
pub struct WithSecret {
    pub committed: Committed<WebhookEndpoint>,
    pub secret: SecretString,
}

/// The delivery policy a receiver URL must meet when it is registered: the scheme, no
/// credentials, and no address literal that deliveries would refuse. (Names are checked
/// when each delivery resolves them.)
pub fn check_url_policy(url: &str, settings: &WebhookSettings) -> Result<(), WebhookError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| WebhookError::UrlRefused(format!("url is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if settings.allow_http => {}
        "http" => {
            return Err(WebhookError::UrlRefused(
                "url must be https (plain http needs WEBHOOK_ALLOW_HTTP=true)".into(),
            ))
        }
        _ => return Err(WebhookError::UrlRefused("url must be https".into())),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WebhookError::UrlRefused(
            "url must not carry credentials; the signature authenticates deliveries".into(),
        ));
    }
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(WebhookError::UrlRefused("url needs a host".into())),
    };
    if literal.is_some_and(ssrf::is_forbidden) && !settings.allow_private {
        return Err(WebhookError::UrlRefused(
            "url points at a loopback, private or reserved address (WEBHOOK_ALLOW_PRIVATE is off)"
                .into(),
        ));
    }
    Ok(())
}

impl Webhooks {
    pub async fn create(
        &self,
        request: CreateWebhookRequest,
        metadata: EventMetadata,
    ) -> Result<WithSecret, WebhookError> {
        self.create_with_id(WebhookEndpointId(Uuid::new_v4()), request, metadata)
            .await
    }

    /// Creates the endpoint under a given id (one derived from an Idempotency-Key): a second
    /// creation with the same id is refused by the aggregate.
    pub async fn create_with_id(
        &self,
        id: WebhookEndpointId,
        request: CreateWebhookRequest,
        metadata: EventMetadata,
    ) -> Result<WithSecret, WebhookError> {
        check_url_policy(&request.url, &self.settings)?;
        let secret = self.secrets.generate(id);
        let command = WebhookEndpointCommand::Create {
            endpoint_id: id,
            settings: EndpointSettings {
                url: request.url,
                event_types: request.event_types,
                description: request.description,
            },
            enabled: request.enabled.unwrap_or(true),
            sealed_secret: secret.sealed,
            at: metadata.occurred_at,
        };
        let committed = self.run(id, command, metadata).await?;
        Ok(WithSecret {
            committed,
            secret: secret.shown,
        })
    }

    pub async fn update(
        &self,
        id: WebhookEndpointId,
        request: UpdateWebhookRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<WebhookEndpoint>, WebhookError> {
        if let Some(url) = &request.url {
            check_url_policy(url, &self.settings)?;
        }
        let enabling = request.enabled == Some(true);
        let command = WebhookEndpointCommand::Update {
            change: EndpointChange {
                url: request.url,
                event_types: request.event_types,
                description: request.description,
                enabled: request.enabled,
            },
            at: metadata.occurred_at,
        };
        let committed = self.run(id, command, metadata).await?;
        if enabling {
            // An admin turned it back on: its old failures no longer count towards disabling it.
            webhook_queue::reset_failing(&self.db, id.as_uuid()).await?;
        }
        Ok(committed)
    }

    pub async fn rotate_secret(
        &self,
        id: WebhookEndpointId,
        metadata: EventMetadata,
    ) -> Result<WithSecret, WebhookError> {
        let secret = self.secrets.generate(id);
        let command = WebhookEndpointCommand::RotateSecret {
            sealed_secret: secret.sealed,
            at: metadata.occurred_at,
        };
        let committed = self.run(id, command, metadata).await?;
        Ok(WithSecret {
            committed,
            secret: secret.shown,
        })
    }

    pub async fn delete(
        &self,
        id: WebhookEndpointId,
        metadata: EventMetadata,
    ) -> Result<Committed<WebhookEndpoint>, WebhookError> {
        let command = WebhookEndpointCommand::Delete {
            at: metadata.occurred_at,
        };
        Ok(self.run(id, command, metadata).await?)
    }

    /// A live endpoint as its events have it now, and its version.
    pub async fn endpoint(
        &self,
        id: WebhookEndpointId,
    ) -> Result<(WebhookEndpoint, u64), WebhookError> {
        let (endpoint, version) = self.load(id).await?;
        match endpoint.state() {
            Some(state) if !state.deleted => Ok((endpoint, version)),
            _ => Err(WebhookError::NotFound),
        }
    }

    /// An endpoint's delivery attempts after the cursor; also of a deleted endpoint (its log is
    /// history).
    pub async fn delivery_log(
        &self,
        id: WebhookEndpointId,
        query: &AttemptQuery,
    ) -> Result<Vec<AttemptRow>, WebhookError> {
        let (endpoint, _) = self.load(id).await?;
        if endpoint.state().is_none() {
            return Err(WebhookError::NotFound);
        }
        Ok(crate::read::webhooks::attempts(&self.db, id.as_uuid(), query).await?)
    }

    /// Sends a delivery again (now, with a fresh retry schedule), whatever became of it.
    pub async fn redeliver(
        &self,
        id: WebhookEndpointId,
        delivery_id: Uuid,
    ) -> Result<(), WebhookError> {
        self.endpoint(id).await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        if webhook_queue::redeliver(&self.db, id.as_uuid(), delivery_id, now_ms).await? {
            Ok(())
        } else {
            Err(WebhookError::DeliveryNotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(allow_http: bool, allow_private: bool) -> WebhookSettings {
        WebhookSettings {
            allow_http,
            allow_private,
            retry_schedule: vec![Duration::from_secs(1)],
            timeout: Duration::from_secs(1),
            disable_after: Duration::from_secs(60),
            poll: Duration::from_millis(100),
            rotation_grace: Duration::from_secs(60),
            include_request_metadata: false,
        }
    }

    #[test]
    fn https_is_required_unless_http_is_allowed() {
        let strict = settings(false, false);
        assert!(check_url_policy("https://hooks.example.com/in", &strict).is_ok());
        assert!(check_url_policy("http://hooks.example.com/in", &strict).is_err());
        assert!(check_url_policy("http://hooks.example.com/in", &settings(true, false)).is_ok());
        assert!(check_url_policy("ftp://hooks.example.com/in", &settings(true, true)).is_err());
    }

    #[test]
    fn credentials_and_forbidden_literals_are_refused() {
        let strict = settings(true, false);
        assert!(check_url_policy("https://user:pw@hooks.example.com/", &strict).is_err());
        for url in [
            "https://127.0.0.1/",
            "https://[::1]:8443/",
            "https://169.254.169.254/latest",
            "https://[::ffff:10.0.0.1]/",
            "https://0x7f.1/",
        ] {
            assert!(check_url_policy(url, &strict).is_err(), "{url}");
            assert!(
                check_url_policy(url, &settings(true, true)).is_ok(),
                "{url}"
            );
        }
        // A name is checked when a delivery resolves it, not here.
        assert!(check_url_policy("https://localhost/", &strict).is_ok());
    }
}
