//! In-process work on the server's database: the server library's own application
//! operations (`subscriptions::create`, `Licensing::activate`, the subscription command
//! runner), run by this process through an `App` started for maintenance (no publisher, no
//! projectors). What they append reaches the running server's read models through its
//! publisher, as any other instance's writes would.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::Utc;
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::subscription::NewSubscription;
use flowlytix_aggregates::{
    DeviceDetails, DeviceId, DeviceInfo, Email, Plan, PolicyId, SubscriptionAction, SubscriptionId,
};
use flowlytix_server::crypto::{new_license_key, sha256_hex};
use flowlytix_server::licensing::{fingerprint_hash, TokenIssued};
use flowlytix_server::store::EventMetadata;
use flowlytix_server::subscriptions::CreateSubscriptionRequest;
use flowlytix_server::{App, Config, SharedApp};
use futures::StreamExt;
use uuid::Uuid;

use crate::seed::{fingerprint_labeled, SeededLicense};
use crate::{Args, BoxError};

/// The server's application, in this process.
pub struct InProcess {
    pub app: SharedApp,
    /// A key directory made for this run (removed by `close`), when the environment does
    /// not name the server's.
    scratch_keys: Option<PathBuf>,
}

impl InProcess {
    /// Starts the application on `database_url`. Its license signing keys are the server's
    /// when `PRIVATE_KEY_PATH` and `PUBLIC_KEY_PATH` are set in the environment; otherwise
    /// a throw-away pair (nothing this process signs is ever handed to a client).
    pub async fn start(database_url: &str, run_id: &str) -> Result<Self, BoxError> {
        let env_keys = std::env::var("PRIVATE_KEY_PATH")
            .ok()
            .zip(std::env::var("PUBLIC_KEY_PATH").ok());
        let (private, public, scratch_keys) = match env_keys {
            Some((private, public)) => (private, public, None),
            None => {
                let dir = std::env::temp_dir().join(format!("flowlytix-bench-keys-{run_id}"));
                std::fs::create_dir_all(&dir)?;
                let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
                (
                    path("license_private.pem"),
                    path("license_public.pem"),
                    Some(dir),
                )
            }
        };
        let config = Config::from_lookup(|name| match name {
            "DATABASE_URL" => Some(database_url.to_owned()),
            "PRIVATE_KEY_PATH" => Some(private.clone()),
            "PUBLIC_KEY_PATH" => Some(public.clone()),
            _ => None,
        })?;
        let app = App::start_for_maintenance(config).await;
        match app {
            Ok(app) => Ok(Self { app, scratch_keys }),
            Err(error) => {
                remove_dir(scratch_keys.as_ref());
                Err(error.into())
            }
        }
    }

    pub async fn close(self) {
        self.app.db.close().await;
        remove_dir(self.scratch_keys.as_ref());
    }
}

fn remove_dir(dir: Option<&PathBuf>) {
    if let Some(dir) = dir {
        if let Err(error) = std::fs::remove_dir_all(dir) {
            eprintln!("could not remove {}: {error}", dir.display());
        }
    }
}

pub fn metadata() -> EventMetadata {
    EventMetadata {
        user_agent: "flowlytix-bench".into(),
        ..EventMetadata::system(Utc::now())
    }
}

/// Seeds the validate set in-process, `--seed-concurrency` subscriptions at a time: each
/// subscription is one command list run by the server's command runner
/// (`SubscriptionCommands::run`: load, decide, append), `CreateSubscription` followed by
/// `ActivateDevice` and `IssueLicenseToken` for each device. The aggregate decides and emits
/// the same events the create and activate operations give (`SubscriptionCreated`,
/// `LicenseKeyIssued`, then `DeviceActivated` and `LicenseTokenIssued` per device), in one
/// transaction instead of one per request: a quarter of the commits and no key lookups,
/// which is what makes 100 000 subscriptions fit in a few minutes.
///
/// `label` tells this set's customers and fingerprints from another set's (`s` for the
/// validate set); with `follow`, every subscription follows that policy, as one created
/// with `policy` and no overrides does (see `subscriptions::create`).
pub async fn licenses(
    app: &App,
    args: &Args,
    run_id: &str,
    label: &str,
    follow: Option<&Follow>,
) -> Result<Vec<SeededLicense>, BoxError> {
    let devices = args.devices_per_subscription;
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let tenth = (args.subscriptions / 10).max(1);
    let results: Vec<Result<SeededLicense, BoxError>> =
        futures::stream::iter(0..args.subscriptions)
            .map(|i| {
                let done = &done;
                async move {
                    let license = seed_license(app, run_id, label, follow, i, devices).await;
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % tenth == 0 {
                        println!(
                            "  {n} subscriptions seeded in {:.0} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    license
                }
            })
            .buffer_unordered(args.seed_concurrency.max(1))
            .collect()
            .await;
    results.into_iter().collect()
}

/// The policy seeded subscriptions follow: its id, and its code (a follower's plan).
pub struct Follow {
    pub policy_id: PolicyId,
    pub plan: Plan,
}

/// One seeded subscription with its devices, in one command (with `devices` 0, the
/// subscription alone).
pub async fn seed_license(
    app: &App,
    run_id: &str,
    label: &str,
    follow: Option<&Follow>,
    i: usize,
    devices: u32,
) -> Result<SeededLicense, BoxError> {
    let key = new_license_key();
    let id = SubscriptionId(Uuid::new_v4());
    let now = Utc::now();
    // A follower's plan is its policy's code and its device limit, period and entitlements
    // are the policy's: it sets none of its own (the 1 is what `create` records then).
    let (plan, max_devices, features, policy_id) = match follow {
        None => (
            Plan::parse("pro")?,
            devices,
            vec!["export".into(), "sync".into()],
            None,
        ),
        Some(follow) => (follow.plan.clone(), 1, vec![], Some(follow.policy_id)),
    };
    let mut actions = Vec::with_capacity(1 + 2 * devices as usize);
    actions.push(SubscriptionAction::CreateSubscription(NewSubscription {
        subscription_id: id,
        customer_email: Email::parse(&format!("bench-{run_id}-{label}{i}@example.com"))?,
        customer_name: format!("Bench {label}{i}"),
        organization: None,
        plan,
        starts_at: now,
        expires_at: None,
        trial_ends_at: None,
        max_devices,
        features,
        metadata: serde_json::Map::new(),
        key_hash: sha256_hex(key.expose()),
        key_prefix: key.display_prefix(),
        policy_id,
        overrides: vec![],
    }));
    let mut fingerprints = Vec::with_capacity(devices as usize);
    for d in 0..devices {
        let fingerprint = fingerprint_labeled(run_id, label, i, d);
        let hash = fingerprint_hash(&fingerprint)?;
        actions.push(SubscriptionAction::ActivateDevice(DeviceDetails {
            device_id: DeviceId(Uuid::new_v4()),
            fingerprint_hash: hash.clone(),
            info: DeviceInfo {
                name: Some(format!("bench {fingerprint}")),
                platform: Some("linux".into()),
                os_version: None,
                app_version: None,
                hostname: None,
            },
        }));
        actions.push(SubscriptionAction::IssueLicenseToken {
            fingerprint_hash: hash,
            token_id: Uuid::new_v4(),
            expires_at: app.licensing.tokens().requested_expiry(now),
        });
        fingerprints.push(fingerprint);
    }
    app.subscriptions
        .commands()
        .run(id, actions, metadata(), None)
        .await?;
    Ok((key.expose().to_owned(), fingerprints))
}

/// A subscription made by `subscriptions::create`, with `devices` devices activated:
/// its key, their fingerprints and its id.
pub async fn license(
    app: &App,
    run_id: &str,
    label: &str,
    devices: u32,
) -> Result<(String, Vec<String>, SubscriptionId), BoxError> {
    let created = app
        .subscriptions
        .create(
            CreateSubscriptionRequest {
                customer_email: format!("bench-{run_id}-{label}@example.com"),
                customer_name: format!("Bench {label}"),
                organization: None,
                policy: None,
                plan: Some("pro".into()),
                max_devices: Some(devices),
                starts_at: None,
                expires_at: None,
                trial_ends_at: None,
                features: vec!["export".into(), "sync".into()],
                metadata: serde_json::Map::new(),
            },
            metadata(),
        )
        .await?;
    let id = created
        .committed
        .aggregate
        .state()
        .map(|state| state.id)
        .ok_or("a created subscription has no state")?;
    let key = created.license_key.expose().to_owned();
    let mut fingerprints = Vec::with_capacity(devices as usize);
    for d in 0..devices {
        let fingerprint = format!("bench-{run_id}-{label}-d{d}");
        activate(app, &key, &fingerprint).await?;
        fingerprints.push(fingerprint);
    }
    Ok((key, fingerprints, id))
}

/// `Licensing::activate`, as `POST /api/v1/licensing/activate` calls it: the event's
/// position.
pub async fn activate(app: &App, key: &str, fingerprint: &str) -> Result<i64, BoxError> {
    Ok(activate_issued(app, key, fingerprint).await?.position)
}

/// `Licensing::activate`: what it issued (the device and its signed token).
pub async fn activate_issued(
    app: &App,
    key: &str,
    fingerprint: &str,
) -> Result<TokenIssued, BoxError> {
    Ok(app
        .licensing
        .activate(
            LicenseKey::parse(key)?,
            fingerprint_hash(fingerprint)?,
            DeviceInfo {
                name: Some(format!("bench {fingerprint}")),
                platform: Some("linux".into()),
                ..DeviceInfo::default()
            },
            &flowlytix_server::licensing::Scope::default(),
            metadata(),
        )
        .await?)
}
