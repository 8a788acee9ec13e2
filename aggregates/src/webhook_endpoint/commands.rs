use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{DisableReason, SealedSecret};
use crate::values::WebhookEndpointId;

/// Where an endpoint receives and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSettings {
    pub url: String,
    /// `None`: every event type.
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A change to some settings; `None` leaves a setting as it is. For `event_types` and
/// `description`, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub event_types: Option<Option<Vec<String>>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WebhookEndpointCommand {
    Create {
        endpoint_id: WebhookEndpointId,
        settings: EndpointSettings,
        enabled: bool,
        sealed_secret: SealedSecret,
        at: DateTime<Utc>,
    },
    Update {
        change: EndpointChange,
        at: DateTime<Utc>,
    },
    RotateSecret {
        sealed_secret: SealedSecret,
        at: DateTime<Utc>,
    },
    Disable {
        reason: DisableReason,
        failing_since: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    Enable {
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
}
