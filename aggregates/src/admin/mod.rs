//! The `AdminUser` aggregate: someone who manages subscriptions (`admin`) or reads the
//! history (`auditor`). Its id is derived from the email, so creating a second admin with the
//! same email meets an existing aggregate and is refused.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{AdminId, Email, Role};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminCommand {
    /// `password_hash` is an argon2id PHC string computed by the caller.
    CreateAdmin {
        admin_id: AdminId,
        email: Email,
        password_hash: String,
        role: Role,
        at: DateTime<Utc>,
    },
    ChangeRole {
        role: Role,
        at: DateTime<Utc>,
    },
    ChangePassword {
        password_hash: String,
        at: DateTime<Utc>,
    },
    DisableAdmin {
        at: DateTime<Utc>,
    },
}

/// Admin events hold the password only as an argon2id hash (salted, slow), never in plain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminEvent {
    AdminCreated {
        admin_id: AdminId,
        email: Email,
        password_hash: String,
        role: Role,
        at: DateTime<Utc>,
    },
    AdminRoleChanged {
        previous_role: Role,
        role: Role,
        at: DateTime<Utc>,
    },
    AdminPasswordChanged {
        password_hash: String,
        at: DateTime<Utc>,
    },
    AdminDisabled {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AdminEvent {
    fn event_type(&self) -> String {
        match self {
            AdminEvent::AdminCreated { .. } => "AdminCreated",
            AdminEvent::AdminRoleChanged { .. } => "AdminRoleChanged",
            AdminEvent::AdminPasswordChanged { .. } => "AdminPasswordChanged",
            AdminEvent::AdminDisabled { .. } => "AdminDisabled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("an admin with this email already exists")]
    AlreadyExists,
    #[error("no such admin")]
    NotFound,
    #[error("the admin is disabled")]
    Disabled,
    #[error("the password hash is not an argon2id PHC string")]
    InvalidPasswordHash,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminUser {
    state: Option<AdminState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminState {
    pub id: AdminId,
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl AdminUser {
    pub fn state(&self) -> Option<&AdminState> {
        self.state.as_ref()
    }

    pub fn decide(&self, command: AdminCommand) -> Result<Vec<AdminEvent>, AdminError> {
        if let AdminCommand::CreateAdmin {
            admin_id,
            email,
            password_hash,
            role,
            at,
        } = command
        {
            if self.state.is_some() {
                return Err(AdminError::AlreadyExists);
            }
            check_password_hash(&password_hash)?;
            return Ok(vec![AdminEvent::AdminCreated {
                admin_id,
                email,
                password_hash,
                role,
                at,
            }]);
        }
        let state = self.state.as_ref().ok_or(AdminError::NotFound)?;
        if state.disabled {
            return Err(AdminError::Disabled);
        }
        Ok(match command {
            AdminCommand::CreateAdmin { .. } => unreachable!("handled above"),
            AdminCommand::ChangeRole { role, at } if role != state.role => {
                vec![AdminEvent::AdminRoleChanged {
                    previous_role: state.role,
                    role,
                    at,
                }]
            }
            AdminCommand::ChangeRole { .. } => vec![],
            AdminCommand::ChangePassword { password_hash, at } => {
                check_password_hash(&password_hash)?;
                vec![AdminEvent::AdminPasswordChanged { password_hash, at }]
            }
            AdminCommand::DisableAdmin { at } => vec![AdminEvent::AdminDisabled { at }],
        })
    }
}

/// A cheap shape check: the aggregate cannot verify a hash, but it can refuse a plaintext.
fn check_password_hash(hash: &str) -> Result<(), AdminError> {
    if hash.starts_with("$argon2id$") && hash.len() > 40 {
        Ok(())
    } else {
        Err(AdminError::InvalidPasswordHash)
    }
}

impl Aggregate for AdminUser {
    const TYPE: &'static str = "AdminUser";
    type Command = AdminCommand;
    type Event = AdminEvent;
    type Error = AdminError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AdminCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AdminError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: AdminEvent) {
        match event {
            AdminEvent::AdminCreated {
                admin_id,
                email,
                password_hash,
                role,
                at,
            } => {
                self.state = Some(AdminState {
                    id: admin_id,
                    email,
                    password_hash,
                    role,
                    disabled: false,
                    created_at: at,
                });
            }
            AdminEvent::AdminRoleChanged { role, .. } => {
                if let Some(state) = &mut self.state {
                    state.role = role;
                }
            }
            AdminEvent::AdminPasswordChanged { password_hash, .. } => {
                if let Some(state) = &mut self.state {
                    state.password_hash = password_hash;
                }
            }
            AdminEvent::AdminDisabled { .. } => {
                if let Some(state) = &mut self.state {
                    state.disabled = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
