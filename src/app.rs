//! The application: builds the services once at start-up, holds them for the handlers, and
//! runs the background tasks. The services take only the handles they use.

use std::sync::Arc;

use flowlytix_aggregates::AdminUser;
use flowlytix_projections::enabled_projectors;

use crate::auth::accounts::{self, AccountError, FirstAdminSettings};
use crate::auth::browser_sessions::BrowserSessions;
use crate::auth::{AdminAuth, SignInThrottle};
use crate::background::BackgroundTasks;
use crate::bus::jetstream::{run_projector, BatchSettings, JetStreamSettings};
use crate::bus::{EventBus, InProcessBus, JetStreamBus};
use crate::catalogue::{follow_policy_changes, Catalogue, Policies};
use crate::config::Config;
use crate::idempotency::IdempotencyKeys;
use crate::keys::{IfMissing, JwtKeys, KeyError};
use crate::leases::{Culler, LeaseClock};
use crate::licensing::freshness::follow_license_changes;
use crate::licensing::token::LicenseTokens;
use crate::licensing::{LicenseCache, Licensing};
use crate::read::progress::EventCount;
use crate::store::publisher::{Publisher, PublisherStatus};
use crate::store::{self, Db, Executor, Lookup};
use crate::subscriptions::deadlines::DeadlineScheduler;
use crate::subscriptions::{SubscriptionAdmin, SubscriptionCommands};
use crate::webhooks::dispatcher::Dispatcher;
use crate::webhooks::Webhooks;

pub type SharedApp = Arc<App>;

pub struct App {
    pub config: Config,
    pub db: Db,
    /// What client apps call: activate, validate, refresh, deactivate.
    pub licensing: Arc<Licensing>,
    /// What admins do to subscriptions and devices.
    pub subscriptions: SubscriptionAdmin,
    pub admins: Executor<AdminUser>,
    pub webhooks: Arc<Webhooks>,
    /// Every policy's terms, kept current on every instance.
    pub policies: Arc<Policies>,
    /// What admins do to products, entitlements and policies.
    pub catalogue: Catalogue,
    pub lookup: Lookup,
    pub admin_auth: AdminAuth,
    /// The admin panel's sessions (cookies), riding on `admin_auth`'s.
    pub browser_sessions: BrowserSessions,
    /// What `Idempotency-Key` remembers, sealed with a key derived from the admin secret.
    pub idempotency: IdempotencyKeys,
    pub bus: Arc<dyn EventBus>,
    /// Set when NATS is configured: the projectors consume from it.
    pub jetstream: Option<JetStreamBus>,
    pub publisher_status: Arc<PublisherStatus>,
    /// The event log's size, kept as a running figure for `/health`.
    pub event_count: EventCount,
    background: BackgroundTasks,
    /// Reporting to Sentry while the app lives (`SENTRY_DSN`).
    _error_reports: Option<sentry::ClientInitGuard>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Database(#[from] store::OpenError),
    #[error("the database failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot reach NATS")]
    Bus(#[from] crate::bus::BusError),
    #[error(transparent)]
    AdminAccount(#[from] AccountError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read the policies: {0}")]
    Policies(#[source] crate::store::ExecuteError<flowlytix_aggregates::CatalogueError>),
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
        crate::monitoring::install();
        let error_reports = match (&config.sentry_dsn, role) {
            (Some(dsn), StartMode::Server) => {
                crate::telemetry::error_reports::init(dsn, &config.environment, &config.version)
            }
            _ => None,
        };
        let url = config.store_url();
        // A one-off command works on the server's store and keys: it creates neither.
        let (db, if_missing) = match role {
            StartMode::Server => {
                let limit = Some(crate::idempotency::STATEMENT_LIMIT);
                let db = store::open(url, config.database_echo, limit).await?;
                (db, IfMissing::Generate)
            }
            StartMode::Maintenance => (
                store::open_existing(url, config.database_echo).await?,
                IfMissing::Refuse,
            ),
        };
        let license_keys = JwtKeys::load(
            &config.private_key_path,
            &config.public_key_path,
            config.is_production(),
            if_missing,
        )?;
        tracing::info!(kid = %license_keys.kid, public_key = %config.public_key_path.display(), "license signing key loaded");
        let server_secret = crate::keys::server_secret(
            config.secret_key.as_ref(),
            &config.private_key_path,
            if_missing,
        )?;
        let admin_keys =
            JwtKeys::derive_from_secret("flowlytix admin access token v1", &server_secret);
        let jetstream = match &config.nats_url {
            Some(url) => Some(
                JetStreamBus::connect(JetStreamSettings {
                    url: url.clone(),
                    stream: config.nats_stream.clone(),
                    subject_prefix: config.nats_subject_prefix.clone(),
                    store_id: store::notices::store_identity(&db).await?,
                })
                .await?,
            ),
            None => None,
        };
        let bus: Arc<dyn EventBus> = match &jetstream {
            Some(jetstream) => Arc::new(jetstream.clone()),
            None => Arc::new(InProcessBus::new(
                db.clone(),
                enabled_projectors(config.enable_analytics),
            )),
        };
        // The embedded server is the only writer of its database: it hears of every change.
        let licenses = Arc::new(LicenseCache::new(matches!(db, Db::Sqlite(_))));
        let lookup = Lookup::new(db.clone());
        let policies = Arc::new(Policies::new(db.clone(), lookup.clone()));
        let count = policies.load_all().await.map_err(StartError::Policies)?;
        tracing::debug!(policies = count, "policies loaded");
        let lease_clock = Arc::new(LeaseClock::new(db.clone()));
        let commands = Arc::new(SubscriptionCommands::new(
            db.clone(),
            licenses.clone(),
            policies.clone(),
            lease_clock,
        ));
        let license_tokens = LicenseTokens::new(
            Arc::new(license_keys),
            config.license_token_issuer.clone(),
            config.license_token_ttl,
        );
        let app = Arc::new(App {
            licensing: Arc::new(Licensing::new(
                commands.clone(),
                lookup.clone(),
                license_tokens,
                licenses,
            )),
            subscriptions: SubscriptionAdmin::new(commands, lookup.clone()),
            bus,
            jetstream,
            publisher_status: Arc::default(),
            event_count: EventCount::default(),
            background: BackgroundTasks::default(),
            _error_reports: error_reports,
            admins: Executor::without_snapshots(db.clone()),
            webhooks: Arc::new(Webhooks::new(
                db.clone(),
                &server_secret,
                config.webhooks.clone(),
            )),
            catalogue: Catalogue::new(db.clone(), policies.clone()),
            policies,
            lookup,
            browser_sessions: BrowserSessions::new(db.clone(), config.access_token_ttl),
            idempotency: IdempotencyKeys::new(db.clone(), &server_secret),
            admin_auth: AdminAuth::new(
                admin_keys,
                config.license_token_issuer.clone(),
                config.access_token_ttl,
                config.refresh_token_ttl,
                db.clone(),
                SignInThrottle::new(config.sign_in_attempts_per_account_per_hour),
            ),
            db,
            config,
        });
        if role == StartMode::Server {
            let first = FirstAdminSettings::from_config(&app.config);
            let outcome = accounts::bootstrap_first_admin(&app.admins, &app.lookup, &first).await?;
            accounts::announce_first_admin(outcome);
            app.start_background_tasks().await;
        }
        Ok(app)
    }

    /// The publisher, with NATS one consumer task per projector (the webhook queue's
    /// included; without NATS the publisher projects in-process), and the webhook
    /// dispatcher unless notifications are off.
    async fn start_background_tasks(self: &Arc<Self>) {
        if self.config.enable_notifications {
            let dispatcher = Dispatcher::new(
                self.webhooks.clone(),
                self.db.clone(),
                self.config.webhooks.clone(),
            );
            // Joined: the attempts in flight record their outcome before the pool closes.
            self.background
                .spawn_joined(dispatcher.run(self.background.signal()));
        } else {
            tracing::info!(
                "ENABLE_NOTIFICATIONS is off: webhook deliveries queue until it is on again"
            );
        }
        if self.jetstream.is_none() && self.config.enable_analytics {
            self.catch_up_analytics().await;
        }
        let publisher = Publisher::new(
            self.db.clone(),
            self.bus.clone(),
            self.publisher_status.clone(),
        );
        self.background
            .spawn_joined(publisher.run(self.background.signal()));
        // Joined: a pass stops between commands, before the pool closes.
        let deadlines = DeadlineScheduler::new(
            self.subscriptions.shared_commands(),
            self.config.deadlines.clone(),
        );
        self.background
            .spawn_joined(deadlines.run(self.db.clone(), self.background.signal()));
        let culler = Culler::new(
            self.subscriptions.shared_commands(),
            self.config.lease_scan_interval,
        );
        self.background
            .spawn_joined(culler.run(self.db.clone(), self.background.signal()));
        self.background
            .spawn(crate::monitoring::run_upkeep(self.background.signal()));
        self.background.spawn(
            self.idempotency
                .clone()
                .purge_periodically(self.background.signal()),
        );
        if let Db::Postgres(pool) = &self.db {
            self.background.spawn(follow_license_changes(
                self.licensing.clone(),
                pool.clone(),
                self.background.signal(),
            ));
            self.background.spawn(follow_policy_changes(
                self.policies.clone(),
                pool.clone(),
                self.background.signal(),
            ));
        }
        if let Some(jetstream) = &self.jetstream {
            if let Err(error) = jetstream.ensure_stream().await {
                tracing::warn!(error = %crate::telemetry::error_chain(&error), "NATS is not reachable yet; commands work, read models will catch up");
            }
            if !self.config.enable_analytics {
                tracing::info!("ENABLE_ANALYTICS is off: no analytics projector runs");
            }
            for projector in enabled_projectors(self.config.enable_analytics) {
                self.background.spawn_joined(run_projector(
                    jetstream.clone(),
                    self.db.clone(),
                    Arc::from(projector),
                    BatchSettings {
                        size: self.config.projection_batch_size,
                        wait: self.config.projection_batch_wait,
                    },
                    self.background.signal(),
                ));
            }
        }
    }

    /// On the embedded store, the in-process bus projects only what is published from now
    /// on: analytics that were off (`ENABLE_ANALYTICS=false`) missed the events in between,
    /// and would wait for them forever. A replay rebuilds them first (it is online).
    async fn catch_up_analytics(&self) {
        let behind = match crate::read::progress::projectors(&self.db, true).await {
            Ok(progress) => {
                let applied = |name: &str| {
                    progress
                        .iter()
                        .find(|p| p.name == name)
                        .map_or(0, |p| p.events_applied + p.parked)
                };
                applied("analytics") < applied("subscriptions")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether the analytics are behind");
                false
            }
        };
        if !behind {
            return;
        }
        tracing::info!("analytics were off and are behind: rebuilding the read models");
        if let Err(error) = flowlytix_projections::replay::replay(&self.db, &|_| {}).await {
            tracing::error!(error = %crate::telemetry::error_chain(&error), "rebuilding the analytics failed; run `flowlytix replay`");
        }
    }

    /// What the sampled metrics read at each scrape.
    pub fn sampled_sources(&self) -> crate::monitoring::sampled::Sources<'_> {
        crate::monitoring::sampled::Sources {
            db: &self.db,
            event_count: &self.event_count,
            publisher_status: &self.publisher_status,
            jetstream: self.jetstream.as_ref(),
            analytics: self.config.enable_analytics,
        }
    }

    /// Stops the publisher and projectors of this instance (its HTTP server is stopped by
    /// its own shutdown signal).
    pub fn stop_background_tasks(&self) {
        self.background.stop();
    }

    /// After the HTTP server has stopped: the publisher finishes the batch it is
    /// publishing, the projectors the batches they took (and acknowledge them) and the
    /// webhook dispatcher the attempts it has in flight (and records them), within
    /// `within`; then the database connections close.
    pub async fn shut_down(&self, within: std::time::Duration) {
        if !self.background.stop_and_join(within).await {
            tracing::warn!(seconds = within.as_secs(), "the publisher, a projector or a webhook attempt did not stop in time; what it had not acknowledged or recorded is published, projected or delivered again after the next start");
        }
        if let Some(jetstream) = &self.jetstream {
            jetstream.flush().await;
        }
        self.db.close().await;
        tracing::info!("shutdown complete");
    }
}

/// What a started application is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StartMode {
    Server,
    Maintenance,
}
