//! What the services' unit tests share: a fresh SQLite store of their own, and the services
//! built on it the way `app.rs` builds them, with no HTTP and no configuration file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::{Sha256Hex, SubscriptionId};
use serde_json::Map;

use crate::catalogue::Policies;
use crate::config::WebhookSettings;
use crate::keys::JwtKeys;
use crate::leases::LeaseClock;
use crate::licensing::token::LicenseTokens;
use crate::licensing::{fingerprint_hash, LicenseCache, Licensing};
use crate::store::{self, Db, EventMetadata, Lookup};
use crate::subscriptions::{CreateSubscriptionRequest, SubscriptionAdmin, SubscriptionCommands};
use crate::webhooks::Webhooks;
use flowlytix_aggregates::DeviceInfo;

/// The server secret the tests' webhook secrets are sealed under.
pub const SERVER_SECRET: &[u8] = b"service tests: server secret";
pub const ISSUER: &str = "https://licenses.test";
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A migrated SQLite file under the temporary directory, removed (with its WAL files) when
/// dropped.
pub struct TempStore {
    pub db: Db,
    path: PathBuf,
}

impl TempStore {
    pub async fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "flowlytix-service-test-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let db = store::connect(&format!("sqlite://{}", path.display()), false)
            .await
            .expect("the temporary SQLite file opens");
        store::migrate(&db).await.expect("the migrations run");
        Self { db, path }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The services over one temporary store, wired as `App::start` wires them.
pub struct Services {
    pub licensing: Licensing,
    pub subscriptions: SubscriptionAdmin,
    pub webhooks: Webhooks,
    /// A clone of the signer `licensing` holds, to verify what it issued.
    pub tokens: LicenseTokens,
    pub store: TempStore,
}

pub async fn services() -> Services {
    let store = TempStore::new().await;
    let db = store.db.clone();
    let licenses = Arc::new(LicenseCache::new(matches!(db, Db::Sqlite(_))));
    let lookup = Lookup::new(db.clone());
    let policies = Arc::new(Policies::new(db.clone(), lookup.clone()));
    let commands = Arc::new(SubscriptionCommands::new(
        db.clone(),
        licenses.clone(),
        policies,
        Arc::new(LeaseClock::new(db.clone())),
    ));
    let keys = JwtKeys::derive_from_secret("service tests: license signing key", SERVER_SECRET);
    let tokens = LicenseTokens::new(Arc::new(keys), ISSUER.into(), TOKEN_TTL);
    Services {
        licensing: Licensing::new(commands.clone(), lookup.clone(), tokens.clone(), licenses),
        subscriptions: SubscriptionAdmin::new(commands, lookup),
        webhooks: Webhooks::new(db, SERVER_SECRET, webhook_settings()),
        tokens,
        store,
    }
}

/// The production defaults' policy: https only, no private addresses.
pub fn webhook_settings() -> WebhookSettings {
    WebhookSettings {
        allow_http: false,
        allow_private: false,
        retry_schedule: vec![Duration::from_secs(5)],
        timeout: Duration::from_secs(5),
        disable_after: Duration::from_secs(3600),
        poll: Duration::from_millis(100),
        rotation_grace: Duration::from_secs(60),
        include_request_metadata: false,
    }
}

pub fn metadata() -> EventMetadata {
    EventMetadata::system(Utc::now())
}

pub fn fingerprint(raw: &str) -> Sha256Hex {
    fingerprint_hash(raw).expect("a test fingerprint is well-formed")
}

/// What a device says about itself on activation. The only place the tests build one.
pub fn device(raw_fingerprint: &str) -> DeviceInfo {
    DeviceInfo {
        name: Some(format!("{raw_fingerprint}'s name")),
        platform: Some("linux".into()),
        os_version: Some("6.1".into()),
        app_version: Some("1.2.3".into()),
        hostname: Some(format!("{raw_fingerprint}.local")),
    }
}

pub fn subscription_request(max_devices: u32) -> CreateSubscriptionRequest {
    CreateSubscriptionRequest {
        customer_email: "customer@example.com".into(),
        customer_name: "A Customer".into(),
        organization: Some("Example Ltd".into()),
        policy: None,
        plan: Some("pro".into()),
        max_devices: Some(max_devices),
        starts_at: None,
        expires_at: None,
        trial_ends_at: None,
        features: vec!["export".into()],
        metadata: Map::new(),
    }
}

/// The pool of a test store, for the few checks that read a table directly.
pub fn sqlite(db: &Db) -> &sqlx::SqlitePool {
    match db {
        Db::Sqlite(pool) => pool,
        Db::Postgres(_) => unreachable!("the service tests use SQLite"),
    }
}

impl Services {
    /// A new active subscription for `max_devices` devices, and its license key.
    pub async fn subscription(&self, max_devices: u32) -> (SubscriptionId, LicenseKey) {
        let created = self
            .subscriptions
            .create(subscription_request(max_devices), metadata())
            .await
            .expect("the subscription is created");
        let id = created
            .committed
            .aggregate
            .state()
            .expect("a created subscription has a state")
            .id;
        (id, created.license_key)
    }
}
