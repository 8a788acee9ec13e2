//! The application: everything a request handler needs, built once at start-up.

use std::sync::Arc;

use chrono::Utc;
use flowlytix_aggregates::{AdminCommand, AdminId, AdminUser, Email, Role, Subscription};
use secrecy::ExposeSecret;

use flowlytix_aggregates::{SubscriptionCommand, SubscriptionError};
use flowlytix_projections::all_projectors;
use tokio::sync::watch;

use crate::auth::AdminAuth;
use crate::bus::jetstream::{run_projector, JetStreamSettings};
use crate::bus::{EventBus, InProcessBus, JetStreamBus};
use crate::config::Config;
use crate::keys::{JwtKeys, KeyError};
use crate::licensing::token::LicenseTokens;
use crate::publisher::{Publisher, PublisherStatus};
use crate::store::Committed;
use crate::store::{self, Db, EventMetadata, ExecuteError, Executor, Lookup};
use crate::validation::{LicenseCache, LicenseSnapshot};
use flowlytix_projections::with_db;

pub type SharedApp = Arc<App>;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub subscriptions: Executor<Subscription>,
    pub admins: Executor<AdminUser>,
    pub lookup: Lookup,
    pub license_tokens: LicenseTokens,
    pub admin_auth: AdminAuth,
    pub licenses: LicenseCache,
    pub bus: Arc<dyn EventBus>,
    /// Set when NATS is configured: the projectors consume from it.
    pub jetstream: Option<JetStreamBus>,
    pub publisher_status: Arc<PublisherStatus>,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot connect to the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot create the first admin: {0}")]
    Bootstrap(String),
    #[error("{0}")]
    AdminAccount(String),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

impl App {
    /// Connects, migrates, loads keys and makes sure an admin exists.
    pub async fn start(config: Config) -> Result<SharedApp, StartError> {
        Self::start_as(config, StartMode::Server).await
    }

    /// For one-off commands (`flowlytix admin …`): the same application, without the
    /// first-admin bootstrap and without publishing or projecting.
    pub async fn start_for_maintenance(config: Config) -> Result<SharedApp, StartError> {
        Self::start_as(config, StartMode::Maintenance).await
    }

    async fn start_as(config: Config, role: StartMode) -> Result<SharedApp, StartError> {
        config.check_production_safety()?;
        let url = config
            .database_url
            .as_ref()
            .map_or(store::DEFAULT_SQLITE_URL, |u| u.expose_secret());
        let db = store::connect(url, config.database_echo).await?;
        store::migrate(&db).await?;
        match &db {
            Db::Sqlite(_) => tracing::info!(database = %url, "using the embedded SQLite store"),
            Db::Postgres(_) => tracing::info!("using PostgreSQL"),
        }
        let license_keys = JwtKeys::load_or_generate(
            &config.private_key_path,
            &config.public_key_path,
            config.is_production(),
        )?;
        tracing::info!(kid = %license_keys.kid, public_key = %config.public_key_path.display(), "license signing key loaded");
        let admin_secret: Vec<u8> = match &config.secret_key {
            Some(secret) => secret.expose_secret().as_bytes().to_vec(),
            // Development without SECRET_KEY: a random secret kept beside the signing key,
            // so that sign-ins survive a restart. (Production refuses to start without one.)
            None => {
                let path = config.private_key_path.with_file_name("admin_token_secret");
                crate::keys::load_or_create_secret(&path)?
            }
        };
        let admin_keys =
            JwtKeys::derive_from_secret("flowlytix admin access token v1", &admin_secret);
        let jetstream = match &config.nats_url {
            Some(url) => Some(
                JetStreamBus::connect(JetStreamSettings {
                    url: url.clone(),
                    stream: config.nats_stream.clone(),
                    subject_prefix: config.nats_subject_prefix.clone(),
                })
                .await
                .map_err(|e| StartError::Bootstrap(e.to_string()))?,
            ),
            None => None,
        };
        let bus: Arc<dyn EventBus> = match &jetstream {
            Some(jetstream) => Arc::new(jetstream.clone()),
            None => Arc::new(InProcessBus::new(db.clone())),
        };
        let app = Arc::new(App {
            licenses: LicenseCache::new(db.clone()),
            bus,
            jetstream,
            publisher_status: Arc::default(),
            shutdown: watch::channel(false).0,
            subscriptions: Executor::new(db.clone()),
            admins: Executor::new(db.clone()),
            lookup: Lookup::new(db.clone()),
            license_tokens: LicenseTokens::new(
                Arc::new(license_keys),
                config.license_token_issuer.clone(),
                config.license_token_ttl,
            ),
            admin_auth: AdminAuth::new(
                admin_keys,
                config.license_token_issuer.clone(),
                config.access_token_ttl,
                config.refresh_token_ttl,
                db.clone(),
            ),
            db,
            config,
        });
        if role == StartMode::Server {
            app.bootstrap_first_admin().await?;
            app.start_background_tasks().await;
        }
        Ok(app)
    }

    /// The publisher, and with NATS one consumer task per projector. Without NATS the
    /// publisher projects in-process.
    async fn start_background_tasks(&self) {
        let publisher = Publisher::new(
            self.db.clone(),
            self.bus.clone(),
            self.publisher_status.clone(),
        );
        tokio::spawn(publisher.run(self.shutdown.subscribe()));
        if let Some(jetstream) = &self.jetstream {
            if let Err(error) = jetstream.ensure_stream().await {
                tracing::warn!(%error, "NATS is not reachable yet; commands work, read models will catch up");
            }
            for projector in all_projectors() {
                tokio::spawn(run_projector(
                    jetstream.clone(),
                    self.db.clone(),
                    Arc::from(projector),
                    self.shutdown.subscribe(),
                ));
            }
        }
    }

    /// Stops the publisher and projectors of this instance (its HTTP server is stopped by
    /// its own shutdown signal).
    pub fn stop_background_tasks(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Runs subscription commands and lets validation on this instance see the result at
    /// once, ahead of the read model.
    pub async fn execute_subscription(
        &self,
        id: &str,
        commands: Vec<SubscriptionCommand>,
        metadata: EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<Subscription>, ExecuteError<SubscriptionError>> {
        let committed = self
            .subscriptions
            .execute(id, commands, metadata, expected_version)
            .await?;
        if let Some(state) = committed.aggregate.state() {
            self.licenses
                .remember(LicenseSnapshot::from_state(state, committed.version));
        }
        Ok(committed)
    }

    /// Creates the admin named by `ADMIN_EMAIL`/`ADMIN_PASSWORD` when no admin exists yet.
    async fn bootstrap_first_admin(&self) -> Result<(), StartError> {
        let any_admin: bool = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "select exists (select 1 from events where aggregate_type = 'AdminUser' and event_type = 'AdminCreated')",
            )
            .fetch_one(pool)
            .await?
        });
        if any_admin {
            return Ok(());
        }
        let email = self
            .config
            .admin_email
            .clone()
            .unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned());
        let (password, generated) = match &self.config.admin_password {
            Some(password) => (password.expose_secret().to_owned(), false),
            None if self.config.is_production() => {
                tracing::warn!("no admin exists: set ADMIN_EMAIL and ADMIN_PASSWORD, or run `flowlytix admin create`");
                return Ok(());
            }
            None => (crate::crypto::random_token(), true),
        };
        match self
            .create_admin(
                &email,
                &password,
                Role::Admin,
                EventMetadata::system(Utc::now()),
            )
            .await
        {
            Ok(id) if generated => {
                tracing::info!(admin_id = %id, %email, "created the first admin with a generated password");
                // Shown on the terminal once, never logged: it exists nowhere else.
                #[allow(clippy::print_stdout)]
                {
                    println!();
                    println!("  First admin created. Sign in with:");
                    println!("    email:    {email}");
                    println!("    password: {password}");
                    println!(
                        "  This password is shown once and never again; change it or keep it safe."
                    );
                    println!();
                }
                Ok(())
            }
            Ok(id) => {
                tracing::info!(admin_id = %id, %email, "created the first admin from ADMIN_EMAIL/ADMIN_PASSWORD");
                Ok(())
            }
            // Another instance starting at the same moment created it first.
            Err(AdminAccountError::Exists) => Ok(()),
            Err(e) => Err(StartError::Bootstrap(e.to_string())),
        }
    }

    pub async fn create_admin(
        &self,
        email: &str,
        password: &str,
        role: Role,
        metadata: EventMetadata,
    ) -> Result<AdminId, AdminAccountError> {
        let email = Email::parse(email).map_err(|e| AdminAccountError::Invalid(e.to_string()))?;
        check_password_strength(password).map_err(AdminAccountError::Invalid)?;
        let password = password.to_owned();
        let password_hash =
            tokio::task::spawn_blocking(move || crate::crypto::hash_password(&password))
                .await
                .map_err(|e| AdminAccountError::Store(e.to_string()))?
                .map_err(|e| AdminAccountError::Store(e.to_string()))?;
        let admin_id = AdminId::for_email(&email);
        let command = AdminCommand::CreateAdmin {
            admin_id,
            email,
            password_hash,
            role,
            at: Utc::now(),
        };
        match self
            .admins
            .execute(&admin_id.to_string(), vec![command], metadata, None)
            .await
        {
            Ok(_) => Ok(admin_id),
            Err(ExecuteError::Domain(flowlytix_aggregates::AdminError::AlreadyExists))
            | Err(ExecuteError::Conflict) => Err(AdminAccountError::Exists),
            Err(e) => Err(AdminAccountError::Store(e.to_string())),
        }
    }
}

/// What a started application is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StartMode {
    Server,
    Maintenance,
}

/// A change to an existing admin account (from the CLI).
pub enum AdminChange {
    Role(Role),
    Password(String),
    Disable,
}

impl App {
    /// Changes an admin's role or password, or disables the account, and ends all of its
    /// sessions so that the change takes effect at once.
    pub async fn change_admin(
        &self,
        email: &str,
        change: AdminChange,
        metadata: EventMetadata,
    ) -> Result<AdminId, AdminAccountError> {
        let email = Email::parse(email).map_err(|e| AdminAccountError::Invalid(e.to_string()))?;
        let admin_id = AdminId::for_email(&email);
        let at = Utc::now();
        let (command, reason) = match change {
            AdminChange::Role(role) => (AdminCommand::ChangeRole { role, at }, "role_changed"),
            AdminChange::Password(password) => {
                check_password_strength(&password).map_err(AdminAccountError::Invalid)?;
                let password_hash =
                    tokio::task::spawn_blocking(move || crate::crypto::hash_password(&password))
                        .await
                        .map_err(|e| AdminAccountError::Store(e.to_string()))?
                        .map_err(|e| AdminAccountError::Store(e.to_string()))?;
                (
                    AdminCommand::ChangePassword { password_hash, at },
                    "password_changed",
                )
            }
            AdminChange::Disable => (AdminCommand::DisableAdmin { at }, "admin_disabled"),
        };
        match self
            .admins
            .execute(&admin_id.to_string(), vec![command], metadata, None)
            .await
        {
            Ok(_) => {}
            Err(ExecuteError::Domain(error)) => {
                return Err(AdminAccountError::Invalid(error.to_string()))
            }
            Err(error) => return Err(AdminAccountError::Store(error.to_string())),
        }
        self.admin_auth
            .sessions()
            .revoke_all(admin_id, reason)
            .await
            .map_err(|e| AdminAccountError::Store(e.to_string()))?;
        Ok(admin_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminAccountError {
    #[error("an admin with this email already exists")]
    Exists,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(String),
}

pub const MIN_PASSWORD_LEN: usize = 10;

/// The first admin's email when `ADMIN_EMAIL` is not set.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@flowlytix.local";

pub fn check_password_strength(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN {
        Err(format!(
            "the password must be at least {MIN_PASSWORD_LEN} characters"
        ))
    } else if length > 1024 {
        Err("the password must be at most 1024 characters".into())
    } else {
        Ok(())
    }
}
