use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{EndpointChange, EndpointSettings, WebhookEndpointCommand};
use super::error::WebhookEndpointError;
use super::events::{DisableReason, SealedSecret, WebhookEndpointEvent};
use super::EVENT_TYPES;
use crate::values::WebhookEndpointId;

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// More than there are event types: a list can name each at most once.
pub const MAX_EVENT_TYPES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    state: Option<WebhookEndpointState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEndpointState {
    pub id: WebhookEndpointId,
    pub settings: EndpointSettings,
    pub enabled: bool,
    /// Why it is disabled, while it is.
    pub disabled_reason: Option<DisableReason>,
    pub sealed_secret: SealedSecret,
    /// The secret the last rotation replaced, and when: deliveries are signed with it too
    /// for a grace period, so that receivers can roll over without dropping any.
    #[serde(default)]
    pub previous_secret: Option<PreviousSecret>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub sealed_secret: SealedSecret,
    pub replaced_at: DateTime<Utc>,
}

impl WebhookEndpointState {
    /// Whether an event of this type is for this endpoint.
    pub fn wants(&self, event_type: &str) -> bool {
        self.settings
            .event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == event_type))
    }
}

impl WebhookEndpoint {
    pub fn state(&self) -> Option<&WebhookEndpointState> {
        self.state.as_ref()
    }

    /// A live (not deleted) endpoint's state.
    fn live(&self) -> Result<&WebhookEndpointState, WebhookEndpointError> {
        match &self.state {
            None => Err(WebhookEndpointError::NotFound),
            Some(state) if state.deleted => Err(WebhookEndpointError::Deleted),
            Some(state) => Ok(state),
        }
    }

    pub fn decide(
        &self,
        command: WebhookEndpointCommand,
    ) -> Result<Vec<WebhookEndpointEvent>, WebhookEndpointError> {
        use WebhookEndpointCommand as C;
        use WebhookEndpointEvent as E;
        if let C::Create {
            endpoint_id,
            settings,
            enabled,
            sealed_secret,
            at,
        } = command
        {
            if self.state.is_some() {
                return Err(WebhookEndpointError::AlreadyExists);
            }
            check_settings(&settings)?;
            return Ok(vec![E::WebhookEndpointCreated {
                endpoint_id,
                url: settings.url,
                event_types: settings.event_types,
                description: settings.description,
                enabled,
                sealed_secret,
                at,
            }]);
        }
        let state = self.live()?;
        Ok(match command {
            C::Create { .. } => unreachable!("handled above"),
            C::Update { change, at } => update(state, change, at)?,
            C::RotateSecret { sealed_secret, at } => {
                vec![E::WebhookEndpointSecretRotated { sealed_secret, at }]
            }
            C::Disable {
                reason,
                failing_since,
                at,
            } if state.enabled => vec![E::WebhookEndpointDisabled {
                reason,
                failing_since: failing_since.filter(|_| reason == DisableReason::Failing),
                at,
            }],
            C::Disable { .. } => vec![],
            C::Enable { at } if !state.enabled => vec![E::WebhookEndpointEnabled { at }],
            C::Enable { .. } => vec![],
            C::Delete { at } => vec![E::WebhookEndpointDeleted { at }],
        })
    }
}

/// The events of an update: the new settings if any changed, then the switch on or off.
fn update(
    state: &WebhookEndpointState,
    change: EndpointChange,
    at: DateTime<Utc>,
) -> Result<Vec<WebhookEndpointEvent>, WebhookEndpointError> {
    let current = &state.settings;
    let settings = EndpointSettings {
        url: change.url.unwrap_or_else(|| current.url.clone()),
        event_types: change
            .event_types
            .unwrap_or_else(|| current.event_types.clone()),
        description: change
            .description
            .unwrap_or_else(|| current.description.clone()),
    };
    check_settings(&settings)?;
    let mut events = Vec::new();
    if settings != *current {
        events.push(WebhookEndpointEvent::WebhookEndpointUpdated {
            url: settings.url,
            event_types: settings.event_types,
            description: settings.description,
            at,
        });
    }
    match change.enabled {
        Some(true) if !state.enabled => {
            events.push(WebhookEndpointEvent::WebhookEndpointEnabled { at });
        }
        Some(false) if state.enabled => {
            events.push(WebhookEndpointEvent::WebhookEndpointDisabled {
                reason: DisableReason::Admin,
                failing_since: None,
                at,
            });
        }
        _ => {}
    }
    Ok(events)
}

fn check_settings(settings: &EndpointSettings) -> Result<(), WebhookEndpointError> {
    check_url(&settings.url)?;
    if let Some(types) = &settings.event_types {
        let mut seen = std::collections::BTreeSet::new();
        if types.is_empty() || types.len() > MAX_EVENT_TYPES {
            return Err(WebhookEndpointError::InvalidEventTypes {
                max: MAX_EVENT_TYPES,
            });
        }
        for event_type in types {
            if !EVENT_TYPES.contains(&event_type.as_str()) {
                return Err(WebhookEndpointError::UnknownEventType(event_type.clone()));
            }
            if !seen.insert(event_type) {
                return Err(WebhookEndpointError::InvalidEventTypes {
                    max: MAX_EVENT_TYPES,
                });
            }
        }
    }
    if let Some(description) = &settings.description {
        if description.chars().count() > MAX_DESCRIPTION_LEN
            || description.chars().any(char::is_control)
        {
            return Err(WebhookEndpointError::InvalidDescription {
                max: MAX_DESCRIPTION_LEN,
            });
        }
    }
    Ok(())
}

/// The shape every receiver URL must have. (The server parses it fully, and checks the
/// scheme it allows and the addresses it resolves to, before each delivery.)
fn check_url(url: &str) -> Result<(), WebhookEndpointError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        ""
    };
    let host_present = !rest.is_empty() && !rest.starts_with('/');
    if url.len() > MAX_URL_LEN
        || !host_present
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(WebhookEndpointError::InvalidUrl { max: MAX_URL_LEN });
    }
    Ok(())
}

impl Aggregate for WebhookEndpoint {
    const TYPE: &'static str = "WebhookEndpoint";
    type Command = WebhookEndpointCommand;
    type Event = WebhookEndpointEvent;
    type Error = WebhookEndpointError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WebhookEndpointCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WebhookEndpointError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: WebhookEndpointEvent) {
        use WebhookEndpointEvent as E;
        if let E::WebhookEndpointCreated {
            endpoint_id,
            url,
            event_types,
            description,
            enabled,
            sealed_secret,
            at,
        } = event
        {
            self.state = Some(WebhookEndpointState {
                id: endpoint_id,
                settings: EndpointSettings {
                    url,
                    event_types,
                    description,
                },
                enabled,
                disabled_reason: (!enabled).then_some(DisableReason::Admin),
                sealed_secret,
                previous_secret: None,
                deleted: false,
                created_at: at,
                updated_at: at,
            });
            return;
        }
        let Some(state) = &mut self.state else {
            return;
        };
        state.updated_at = event.at();
        match event {
            E::WebhookEndpointCreated { .. } => {}
            E::WebhookEndpointUpdated {
                url,
                event_types,
                description,
                ..
            } => {
                state.settings = EndpointSettings {
                    url,
                    event_types,
                    description,
                };
            }
            E::WebhookEndpointSecretRotated { sealed_secret, at } => {
                let replaced = std::mem::replace(&mut state.sealed_secret, sealed_secret);
                state.previous_secret = Some(PreviousSecret {
                    sealed_secret: replaced,
                    replaced_at: at,
                });
            }
            E::WebhookEndpointDisabled { reason, .. } => {
                state.enabled = false;
                state.disabled_reason = Some(reason);
            }
            E::WebhookEndpointEnabled { .. } => {
                state.enabled = true;
                state.disabled_reason = None;
            }
            E::WebhookEndpointDeleted { .. } => state.deleted = true,
        }
    }
}
