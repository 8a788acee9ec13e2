use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::values::WebhookEndpointId;

/// What every sealed secret starts with: the format's version, so a later scheme can be told
/// apart.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// A signing secret as the server sealed it (AEAD ciphertext, base64). The aggregate never
/// sees the plaintext, and a plaintext `whsec_…` cannot be built into one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SealedSecret(String);

impl SealedSecret {
    pub fn parse(sealed: &str) -> Result<Self, crate::ValueError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(crate::ValueError::NotSealed)?;
        // A nonce, 32 bytes of secret and a tag, base64: never short, never anything else.
        let plausible = body.len() >= 64
            && body.len() <= 256
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if plausible {
            Ok(Self(sealed.to_owned()))
        } else {
            Err(crate::ValueError::NotSealed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret([redacted])")
    }
}

impl TryFrom<String> for SealedSecret {
    type Error = crate::ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SealedSecret> for String {
    fn from(value: SealedSecret) -> Self {
        value.0
    }
}

/// Why an endpoint stopped receiving deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisableReason {
    /// An admin turned it off.
    Admin,
    /// Its deliveries kept failing for longer than the server allows.
    Failing,
}

/// The variants are named as the feed names the event types, like every aggregate's.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WebhookEndpointEvent {
    WebhookEndpointCreated {
        endpoint_id: WebhookEndpointId,
        url: String,
        /// `None`: every event type.
        event_types: Option<Vec<String>>,
        description: Option<String>,
        enabled: bool,
        sealed_secret: SealedSecret,
        at: DateTime<Utc>,
    },
    /// The settings as they are after the change (all of them, so readers copy, not merge).
    WebhookEndpointUpdated {
        url: String,
        event_types: Option<Vec<String>>,
        description: Option<String>,
        at: DateTime<Utc>,
    },
    WebhookEndpointSecretRotated {
        sealed_secret: SealedSecret,
        at: DateTime<Utc>,
    },
    WebhookEndpointDisabled {
        reason: DisableReason,
        /// For `failing`: since when every attempt has failed.
        failing_since: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    WebhookEndpointEnabled {
        at: DateTime<Utc>,
    },
    WebhookEndpointDeleted {
        at: DateTime<Utc>,
    },
}

impl WebhookEndpointEvent {
    /// When the command that caused it was handled.
    pub fn at(&self) -> DateTime<Utc> {
        use WebhookEndpointEvent::*;
        match self {
            WebhookEndpointCreated { at, .. }
            | WebhookEndpointUpdated { at, .. }
            | WebhookEndpointSecretRotated { at, .. }
            | WebhookEndpointDisabled { at, .. }
            | WebhookEndpointEnabled { at }
            | WebhookEndpointDeleted { at } => *at,
        }
    }
}

impl DomainEvent for WebhookEndpointEvent {
    fn event_type(&self) -> String {
        use WebhookEndpointEvent::*;
        match self {
            WebhookEndpointCreated { .. } => "WebhookEndpointCreated",
            WebhookEndpointUpdated { .. } => "WebhookEndpointUpdated",
            WebhookEndpointSecretRotated { .. } => "WebhookEndpointSecretRotated",
            WebhookEndpointDisabled { .. } => "WebhookEndpointDisabled",
            WebhookEndpointEnabled { .. } => "WebhookEndpointEnabled",
            WebhookEndpointDeleted { .. } => "WebhookEndpointDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
