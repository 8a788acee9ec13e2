//! Admin accounts: creating them, changing role or password, disabling them, and the first
//! admin at start-up. Every change ends the account's sessions so it takes effect at once.

use chrono::Utc;
use flowlytix_aggregates::{AdminCommand, AdminError, AdminId, AdminUser, Email, Role};
use secrecy::{ExposeSecret, SecretString};

use super::sessions::Sessions;
use crate::store::{EventMetadata, ExecuteError, Executor, Lookup};

pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The first admin's email when `ADMIN_EMAIL` is not set.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@flowlytix.local";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an admin with this email already exists")]
    Exists,
    #[error("email: {0}")]
    InvalidEmail(String),
    #[error("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    WeakPassword,
    #[error(transparent)]
    Refused(#[from] AdminError),
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    #[error("the admin store failed: {0}")]
    Store(#[source] ExecuteError<AdminError>),
    #[error("cannot end the admin's sessions")]
    Sessions(#[source] sqlx::Error),
    #[error("cannot look for an existing admin")]
    Lookup(#[source] sqlx::Error),
}

impl From<ExecuteError<AdminError>> for AccountError {
    fn from(error: ExecuteError<AdminError>) -> Self {
        match error {
            ExecuteError::Domain(AdminError::AlreadyExists) | ExecuteError::Conflict => {
                Self::Exists
            }
            ExecuteError::Domain(refusal) => Self::Refused(refusal),
            other => Self::Store(other),
        }
    }
}

/// A change to an existing admin account (from the CLI).
pub enum AdminChange {
    Role(Role),
    Password(String),
    Disable,
}

/// Who the first admin is to be (`ADMIN_EMAIL`, `ADMIN_PASSWORD`), and whether a password
/// may be generated (not in production).
pub struct FirstAdminSettings {
    pub email: Option<String>,
    pub password: Option<SecretString>,
    pub production: bool,
}

impl FirstAdminSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            email: config.admin_email.clone(),
            password: config.admin_password.clone(),
            production: config.is_production(),
        }
    }
}

/// What start-up did about the first admin.
pub enum FirstAdmin {
    /// One existed already (or another instance created it at the same moment).
    Exists,
    /// Created from `ADMIN_EMAIL`/`ADMIN_PASSWORD`.
    FromConfig { email: String },
    /// Created with a generated password, which exists nowhere else: show it once.
    Generated {
        email: String,
        password: SecretString,
    },
    /// None exists and production does not generate passwords.
    Missing,
}

pub fn check_password_strength(password: &str) -> Result<(), AccountError> {
    let length = password.chars().count();
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&length) {
        Ok(())
    } else {
        Err(AccountError::WeakPassword)
    }
}

async fn hash_password(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || crate::crypto::hash_password(&password))
        .await
        .map_err(|e| AccountError::Hashing(e.to_string()))?
        .map_err(|e| AccountError::Hashing(e.to_string()))
}

fn parse_email(email: &str) -> Result<Email, AccountError> {
    Email::parse(email).map_err(|e| AccountError::InvalidEmail(e.to_string()))
}

pub async fn create_admin(
    admins: &Executor<AdminUser>,
    email: &str,
    password: &str,
    role: Role,
    metadata: EventMetadata,
) -> Result<AdminId, AccountError> {
    let email = parse_email(email)?;
    check_password_strength(password)?;
    let password_hash = hash_password(password.to_owned()).await?;
    let admin_id = AdminId::for_email(&email);
    let command = AdminCommand::CreateAdmin {
        admin_id,
        email,
        password_hash,
        role,
        at: Utc::now(),
    };
    admins
        .execute(&admin_id.to_string(), vec![command], metadata, None)
        .await?;
    Ok(admin_id)
}

/// Changes an admin's role or password, or disables the account, and ends all of its
/// sessions.
pub async fn change_admin(
    admins: &Executor<AdminUser>,
    sessions: &Sessions,
    email: &str,
    change: AdminChange,
    metadata: EventMetadata,
) -> Result<AdminId, AccountError> {
    let admin_id = AdminId::for_email(&parse_email(email)?);
    let at = Utc::now();
    let (command, reason) = match change {
        AdminChange::Role(role) => (AdminCommand::ChangeRole { role, at }, "role_changed"),
        AdminChange::Password(password) => {
            check_password_strength(&password)?;
            let password_hash = hash_password(password).await?;
            (
                AdminCommand::ChangePassword { password_hash, at },
                "password_changed",
            )
        }
        AdminChange::Disable => (AdminCommand::DisableAdmin { at }, "admin_disabled"),
    };
    admins
        .execute(&admin_id.to_string(), vec![command], metadata, None)
        .await?;
    sessions
        .revoke_all(admin_id, reason)
        .await
        .map_err(AccountError::Sessions)?;
    Ok(admin_id)
}

/// Creates the admin named by `ADMIN_EMAIL`/`ADMIN_PASSWORD` when no admin exists yet; in
/// development without them, `admin@flowlytix.local` with a generated password.
pub async fn bootstrap_first_admin(
    admins: &Executor<AdminUser>,
    lookup: &Lookup,
    first: &FirstAdminSettings,
) -> Result<FirstAdmin, AccountError> {
    if lookup
        .any_admin_exists()
        .await
        .map_err(AccountError::Lookup)?
    {
        return Ok(FirstAdmin::Exists);
    }
    let email = first
        .email
        .clone()
        .unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned());
    let (password, generated) = match &first.password {
        Some(password) => (password.clone(), false),
        None if first.production => return Ok(FirstAdmin::Missing),
        None => (SecretString::from(crate::crypto::random_token()), true),
    };
    let metadata = EventMetadata::system(Utc::now());
    match create_admin(
        admins,
        &email,
        password.expose_secret(),
        Role::Admin,
        metadata,
    )
    .await
    {
        Ok(_) if generated => Ok(FirstAdmin::Generated { email, password }),
        Ok(_) => Ok(FirstAdmin::FromConfig { email }),
        Err(AccountError::Exists) => Ok(FirstAdmin::Exists),
        Err(error) => Err(error),
    }
}

/// Says what start-up did about the first admin.
pub fn announce_first_admin(outcome: FirstAdmin) {
    match outcome {
        FirstAdmin::Generated { email, password } => show_generated_admin(&email, &password),
        FirstAdmin::FromConfig { email } => {
            tracing::info!(%email, "created the first admin from ADMIN_EMAIL/ADMIN_PASSWORD");
        }
        FirstAdmin::Missing => tracing::warn!(
            "no admin exists: set ADMIN_EMAIL and ADMIN_PASSWORD, or run `flowlytix admin create`"
        ),
        FirstAdmin::Exists => {}
    }
}

/// The generated first admin's password goes to the terminal once, never to the log: it
/// exists nowhere else.
fn show_generated_admin(email: &str, password: &secrecy::SecretString) {
    tracing::info!(%email, "created the first admin with a generated password");
    #[allow(clippy::print_stdout)]
    {
        println!();
        println!("  First admin created. Sign in with:");
        println!("    email:    {email}");
        println!("    password: {}", password.expose_secret());
        println!("  This password is shown once and never again; change it or keep it safe.");
        println!();
    }
}
