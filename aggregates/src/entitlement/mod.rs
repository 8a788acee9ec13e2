//! The `Entitlement` aggregate: one feature a license may unlock (`export`, `sync`), the
//! catalogue that policies and subscriptions name by code. Deleted only while nothing names
//! it, which the application layer checks.

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::catalogue::{check_name, CatalogueError};
use crate::values::{Code, EntitlementId};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entitlement {
    state: Option<EntitlementState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitlementState {
    pub id: EntitlementId,
    pub code: Code,
    pub name: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EntitlementCommand {
    /// Also re-creates a deleted entitlement under its code.
    Create {
        code: Code,
        name: String,
        at: DateTime<Utc>,
    },
    Rename {
        name: String,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EntitlementEvent {
    EntitlementCreated {
        entitlement_id: EntitlementId,
        code: Code,
        name: String,
        at: DateTime<Utc>,
    },
    EntitlementRenamed {
        name: String,
        at: DateTime<Utc>,
    },
    EntitlementDeleted {
        at: DateTime<Utc>,
    },
}

impl EntitlementEvent {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::EntitlementCreated { at, .. }
            | Self::EntitlementRenamed { at, .. }
            | Self::EntitlementDeleted { at } => *at,
        }
    }
}

impl DomainEvent for EntitlementEvent {
    fn event_type(&self) -> String {
        match self {
            Self::EntitlementCreated { .. } => "EntitlementCreated",
            Self::EntitlementRenamed { .. } => "EntitlementRenamed",
            Self::EntitlementDeleted { .. } => "EntitlementDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl Entitlement {
    pub fn state(&self) -> Option<&EntitlementState> {
        self.state.as_ref()
    }

    pub fn live(&self) -> Option<&EntitlementState> {
        self.state.as_ref().filter(|s| !s.deleted)
    }

    pub fn decide(
        &self,
        command: EntitlementCommand,
    ) -> Result<Vec<EntitlementEvent>, CatalogueError> {
        match command {
            EntitlementCommand::Create { code, name, at } => {
                if self.live().is_some() {
                    return Err(CatalogueError::AlreadyExists);
                }
                check_name(&name)?;
                Ok(vec![EntitlementEvent::EntitlementCreated {
                    entitlement_id: EntitlementId::for_code(&code),
                    code,
                    name,
                    at,
                }])
            }
            EntitlementCommand::Rename { name, at } => {
                let state = self.live_or_error()?;
                check_name(&name)?;
                if name == state.name {
                    return Ok(vec![]);
                }
                Ok(vec![EntitlementEvent::EntitlementRenamed { name, at }])
            }
            EntitlementCommand::Delete { at } => {
                self.live_or_error()?;
                Ok(vec![EntitlementEvent::EntitlementDeleted { at }])
            }
        }
    }

    fn live_or_error(&self) -> Result<&EntitlementState, CatalogueError> {
        match &self.state {
            None => Err(CatalogueError::NotFound),
            Some(state) if state.deleted => Err(CatalogueError::Deleted),
            Some(state) => Ok(state),
        }
    }
}

impl Aggregate for Entitlement {
    const TYPE: &'static str = "Entitlement";
    type Command = EntitlementCommand;
    type Event = EntitlementEvent;
    type Error = CatalogueError;
    type Services = ();

    async fn handle(
        &mut self,
        command: EntitlementCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CatalogueError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: EntitlementEvent) {
        match event {
            EntitlementEvent::EntitlementCreated {
                entitlement_id,
                code,
                name,
                at,
            } => {
                self.state = Some(EntitlementState {
                    id: entitlement_id,
                    code,
                    name,
                    deleted: false,
                    created_at: at,
                    updated_at: at,
                });
            }
            EntitlementEvent::EntitlementRenamed { name, at } => {
                if let Some(state) = self.state.as_mut() {
                    state.name = name;
                    state.updated_at = at;
                }
            }
            EntitlementEvent::EntitlementDeleted { at } => {
                if let Some(state) = self.state.as_mut() {
                    state.deleted = true;
                    state.updated_at = at;
                }
            }
        }
    }
}
