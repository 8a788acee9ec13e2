//! Seeding: subscriptions with activated devices for the validate phase, and the
//! subscriptions the activate phase adds devices to.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::Sha256Hex;
use flowlytix_server::crypto::sha256_hex;
use futures::StreamExt;
use serde_json::json;

use crate::api::Bench;
use crate::{Args, BoxError, PhaseKind};

/// Device limit of the subscriptions the activate phase uses (the largest the API allows).
pub const ACTIVATE_MAX_DEVICES: u32 = 10_000;

pub struct Seeded {
    /// Pre-serialized validate bodies, one per seeded (key, fingerprint).
    pub validate_bodies: Vec<Bytes>,
    /// SHA-256 of each seeded key, as the server stores it.
    pub key_hashes: Vec<Sha256Hex>,
    /// Keys of the subscriptions the activate phase uses: worker `w` owns the entries
    /// `w, w + concurrency, w + 2 * concurrency, ...`.
    pub activate_keys: Vec<String>,
}

/// One seeded subscription: its key and the fingerprints activated on it.
pub type SeededLicense = (String, Vec<String>);

pub fn fingerprint(run_id: &str, subscription: usize, device: u32) -> String {
    fingerprint_labeled(run_id, "s", subscription, device)
}

/// A device's fingerprint in the seeded set `label` (`s`: the validate set).
pub fn fingerprint_labeled(run_id: &str, label: &str, subscription: usize, device: u32) -> String {
    format!("bench-{run_id}-{label}{subscription}-d{device}")
}

/// Seeds the validate set through the API, one request at a time per worker.
pub async fn licenses_over_http(
    bench: &Bench,
    args: &Args,
) -> Result<Vec<SeededLicense>, BoxError> {
    let devices = args.devices_per_subscription;
    let results: Vec<Result<SeededLicense, BoxError>> =
        futures::stream::iter(0..args.subscriptions)
            .map(|i| async move {
                let key = bench.create_subscription(&format!("s{i}"), devices).await?;
                let mut fingerprints = Vec::new();
                for d in 0..devices {
                    let fingerprint = fingerprint(&bench.run_id, i, d);
                    bench.activate(&key, &fingerprint).await?;
                    fingerprints.push(fingerprint);
                }
                Ok((key, fingerprints))
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
    results.into_iter().collect()
}

/// Prepares the validate set from the seeded `licenses` (made in `seeded_in`) and creates
/// the activate phase's subscriptions.
pub async fn seed(
    bench: &Bench,
    args: &Args,
    licenses: Vec<SeededLicense>,
    seeded_in: Duration,
) -> Result<Seeded, BoxError> {
    let mut validate_bodies = Vec::new();
    let mut key_hashes = Vec::new();
    for (key, fingerprints) in licenses {
        let parsed = LicenseKey::parse(&key).map_err(|e| format!("seeded key: {e}"))?;
        key_hashes.push(sha256_hex(parsed.expose()));
        for fingerprint in fingerprints {
            let body = json!({"license_key": key, "fingerprint": fingerprint});
            validate_bodies.push(Bytes::from(serde_json::to_vec(&body)?));
        }
    }
    println!(
        "seeded {} subscriptions and {} activations in {:.2} s ({:.1} subscriptions/s)",
        key_hashes.len(),
        validate_bodies.len(),
        seeded_in.as_secs_f64(),
        key_hashes.len() as f64 / seeded_in.as_secs_f64()
    );

    let started = Instant::now();
    let count = if args.phases.contains(&PhaseKind::Activate) {
        args.concurrency * args.activate_subscriptions_per_worker
    } else {
        0
    };
    let results: Vec<Result<String, BoxError>> = futures::stream::iter(0..count)
        .map(|i| async move {
            bench
                .create_subscription(&format!("a{i}"), ACTIVATE_MAX_DEVICES)
                .await
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let activate_keys = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    println!(
        "created {count} subscriptions (max_devices {ACTIVATE_MAX_DEVICES}) for the activate phase in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        validate_bodies,
        key_hashes,
        activate_keys,
    })
}
