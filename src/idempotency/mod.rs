//! `Idempotency-Key` (Stripe's semantics): a caller that repeats a writing request with the
//! same key gets the first answer again instead of a second effect. The HTTP side
//! (`crate::http::idempotency`) names the caller and runs the request; this module decides
//! what a key means, and remembers answers sealed (see [`crate::crypto::seal`]) in `store::idempotency`.
//!
//! What is remembered: successful (2xx) answers only. A refused or failed request wrote
//! nothing (a command commits all its events or none), so its key is released and a retry
//! runs again, which is what a client that fixed its request, or waited out a 5xx, wants.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::{AdminId, Sha256Hex, SubscriptionId};
use flowlytix_eventstore::Db;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::crypto::seal::Sealer;
use crate::crypto::{random_token, sha256_hex};
use crate::store::idempotency::{self as table, Claim, ClaimOutcome};

/// The sealing key's label: remembered answers can hold a license key or token.
const SEALING_LABEL: &[u8] = b"flowlytix idempotency response v1";

/// How long a key is remembered from its first request.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a request may hold its key before a retry may take it over: longer than the
/// 30 s request timeout, so a request still running never loses its key; short enough that
/// a crash mid-request does not lock the key for long.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long a request under a key may run (it runs on when its client goes away or the
/// request times out, so that its answer is remembered): stopped then, so that it is over
/// before its lease runs out and a retry may take the key.
pub const RUN_LIMIT: Duration = Duration::from_secs(45);
/// How long one database statement of a serving instance may run before PostgreSQL cancels
/// it. Stopping an attempt at RUN_LIMIT only drops its future; a statement already sent
/// (an append queued on a lock, say) runs on in the database. With this limit, whatever an
/// attempt sent is over before its lease runs out and a retry may take the key.
pub const STATEMENT_LIMIT: Duration = Duration::from_secs(14);
const _: () = assert!(
    RUN_LIMIT.as_secs() + STATEMENT_LIMIT.as_secs() < LEASE.as_secs(),
    "an attempt's last statement must be over before its lease runs out"
);
pub const MAX_KEY_LEN: usize = 255;
/// How often each instance deletes expired keys.
const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

/// A client's key: 1 to 255 printable ASCII characters (space included, as Stripe's UUIDs
/// and any sensible scheme fit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Idempotency-Key must be 1 to 255 printable ASCII characters")]
pub struct InvalidKey;

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidKey> {
        let printable = raw.iter().all(|b| (0x20..=0x7e).contains(b));
        if raw.is_empty() || raw.len() > MAX_KEY_LEN || !printable {
            return Err(InvalidKey);
        }
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }
}

/// Whose keys these are: a key never means anything to another caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    pub fn admin(admin: AdminId) -> Self {
        Self(format!("admin:{}", admin.0))
    }

    /// A licensing call made with the license key: the key's hash names the license.
    pub fn license_key(key_hash: &Sha256Hex) -> Self {
        Self(format!("license-key:{}", key_hash.as_str()))
    }

    /// A licensing call made with a verified license token: its subscription.
    pub fn license(subscription: SubscriptionId) -> Self {
        Self(format!("license:{}", subscription.0))
    }

    /// What the table keeps instead of the scope and the key.
    fn key_hash(&self, key: &IdempotencyKey) -> String {
        // Neither part can hold a newline, so the pair is unambiguous.
        sha256_hex(format!("{}\n{}", self.0, key.0))
            .as_str()
            .to_owned()
    }
}

/// What makes two requests "the same": method, matched route, path (with its parameters),
/// query and body bytes.
pub struct RequestShape<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
}

impl RequestShape<'_> {
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in [
            self.method.as_bytes(),
            self.route.as_bytes(),
            self.path.as_bytes(),
            self.query.as_bytes(),
        ] {
            // Length-prefixed: no two different requests hash the same parts.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.update(self.body);
        sha256_hex(hasher.finalize()).as_str().to_owned()
    }
}

/// A first answer, as given again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SealedParts {
    headers: Vec<(String, String)>,
    body: String,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Begun {
    /// Run it, then [`IdempotencyKeys::remember`] or [`IdempotencyKeys::forget`].
    Run(Ticket),
    /// The same request was answered: give this answer again.
    Replay(RememberedResponse),
    /// The same request is running now.
    InFlight,
    /// The key was used for a different request.
    Reused,
    /// The same request was answered, but the answer cannot be opened (the server's secret
    /// changed): it must not run twice, and its answer is gone.
    Unreadable,
}

/// This attempt's hold on a key.
#[derive(Debug)]
pub struct Ticket {
    key_hash: String,
    claim_id: String,
    request: IdempotentRequest,
}

impl Ticket {
    /// What the running request may know about its key (a request extension).
    pub fn request(&self) -> IdempotentRequest {
        self.request.clone()
    }
}

/// Given to a handler whose request runs under a key. The answer is remembered only after
/// the command committed; a server that dies in between leaves the key to a retry once
/// its lease ran out, and that retry must not do a second create. So a create takes its
/// new aggregate's id from here: the retry derives the same id, and the event store
/// refuses a second creation (409 `SUBSCRIPTION_EXISTS`) instead of making a duplicate.
#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    /// The key's hash and the time it was first claimed: the same for every attempt under
    /// one key within its retention, different once the key expired and is used again.
    seed: String,
}

impl IdempotentRequest {
    /// Namespace of the derived ids; any fixed UUID works, it must never change.
    const NAMESPACE: Uuid = Uuid::from_u128(0x3d0c_9a51_7e24_4b8f_a6c1_2f90_5e7b_1d44);

    /// The id the request's new aggregate of this kind gets.
    pub fn derived_id(&self, kind: &str) -> Uuid {
        Uuid::new_v5(
            &Self::NAMESPACE,
            format!("{kind}\n{}", self.seed).as_bytes(),
        )
    }
}

#[derive(Clone)]
pub struct IdempotencyKeys {
    db: Db,
    sealer: Sealer,
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn after(at: DateTime<Utc>, wait: Duration) -> i64 {
    millis(at).saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

impl IdempotencyKeys {
    pub fn new(db: Db, secret: &[u8]) -> Self {
        Self {
            db,
            sealer: Sealer::derive(secret, SEALING_LABEL),
        }
    }

    pub async fn begin(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Begun, sqlx::Error> {
        let key_hash = scope.key_hash(key);
        let claim_id = random_token();
        let outcome = table::claim(
            &self.db,
            &Claim {
                key_hash: &key_hash,
                request_hash,
                claim_id: &claim_id,
                now_ms: millis(now),
                lease_until_ms: after(now, LEASE),
                expires_at_ms: after(now, RETENTION),
            },
        )
        .await?;
        Ok(match outcome {
            ClaimOutcome::Claimed { first_claimed_ms } => Begun::Run(Ticket {
                request: IdempotentRequest {
                    seed: format!("{key_hash}:{first_claimed_ms}"),
                },
                key_hash,
                claim_id,
            }),
            ClaimOutcome::InFlight { request_hash: held } if held == request_hash => {
                Begun::InFlight
            }
            ClaimOutcome::Answered {
                request_hash: held,
                status,
                nonce,
                sealed,
            } if held == request_hash => match self.open(&key_hash, status, &nonce, &sealed) {
                Some(response) => Begun::Replay(response),
                None => Begun::Unreadable,
            },
            ClaimOutcome::InFlight { .. } | ClaimOutcome::Answered { .. } => Begun::Reused,
        })
    }

    /// Keeps a successful answer for the key's retention. False when the ticket had lost
    /// its key (its lease ran out and a retry took it over).
    pub async fn remember(
        &self,
        ticket: Ticket,
        response: &RememberedResponse,
    ) -> Result<bool, sqlx::Error> {
        let plaintext = serde_json::to_vec(&SealedParts {
            headers: response.headers.clone(),
            body: STANDARD.encode(&response.body),
        })
        .unwrap_or_default();
        let associated = associated_data(&ticket.key_hash, response.status);
        let (nonce, sealed) = self.sealer.seal(&plaintext, &associated);
        table::complete(
            &self.db,
            &ticket.key_hash,
            &ticket.claim_id,
            response.status,
            &nonce,
            &sealed,
        )
        .await
    }

    /// Lets the key go: the request wrote nothing, a retry may run it.
    pub async fn forget(&self, ticket: Ticket) -> Result<(), sqlx::Error> {
        table::release(&self.db, &ticket.key_hash, &ticket.claim_id).await
    }

    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        table::purge_expired(&self.db, millis(now)).await
    }

    /// Deletes expired keys now and then, until shut down. Every instance may do it: a
    /// delete of what expired is the same whoever runs it.
    pub async fn purge_periodically(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.purge_expired(Utc::now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "expired idempotency keys deleted"),
                Err(error) => tracing::warn!(%error, "cannot delete expired idempotency keys"),
            }
            tokio::select! {
                () = tokio::time::sleep(PURGE_EVERY) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    fn open(
        &self,
        key_hash: &str,
        status: u16,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Option<RememberedResponse> {
        let associated = associated_data(key_hash, status);
        let plaintext = match self.sealer.open(nonce, sealed, &associated) {
            Ok(plaintext) => plaintext,
            Err(error) => {
                tracing::error!(%error, "a remembered idempotent response cannot be opened");
                return None;
            }
        };
        let parts: SealedParts = serde_json::from_slice(&plaintext).ok()?;
        Some(RememberedResponse {
            status,
            headers: parts.headers,
            body: STANDARD.decode(parts.body).ok()?,
        })
    }
}

fn associated_data(key_hash: &str, status: u16) -> Vec<u8> {
    format!("{key_hash}:{status}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        assert!(IdempotencyKey::parse(b"a").is_ok());
        assert!(IdempotencyKey::parse(b"550e8400-e29b-41d4-a716-446655440000").is_ok());
        assert!(IdempotencyKey::parse(b"with space ~").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; MAX_KEY_LEN]).is_ok());
        assert_eq!(IdempotencyKey::parse(b""), Err(InvalidKey));
        assert_eq!(
            IdempotencyKey::parse(&[b'k'; MAX_KEY_LEN + 1]),
            Err(InvalidKey)
        );
        assert_eq!(IdempotencyKey::parse(b"tab\there"), Err(InvalidKey));
        assert_eq!(
            IdempotencyKey::parse("caf\u{e9}".as_bytes()),
            Err(InvalidKey)
        );
        assert_eq!(IdempotencyKey::parse(b"nul\0"), Err(InvalidKey));
    }

    #[test]
    fn one_key_means_different_things_to_different_callers() {
        let key = IdempotencyKey::parse(b"retry-1").unwrap_or_else(|_| unreachable!());
        let a = Scope::admin(AdminId(uuid::Uuid::new_v4())).key_hash(&key);
        let b = Scope::admin(AdminId(uuid::Uuid::new_v4())).key_hash(&key);
        assert_ne!(a, b);
        assert!(!a.contains("retry-1"));
    }

    #[test]
    fn fingerprints_tell_every_part_of_a_request_apart() {
        let shape = |method, path, body: &'static [u8]| RequestShape {
            method,
            route: "/api/v1/subscriptions/{id}/license-key",
            path,
            query: "",
            body,
        };
        let base = shape("POST", "/a", b"{}").fingerprint();
        assert_eq!(base, shape("POST", "/a", b"{}").fingerprint());
        assert_ne!(base, shape("PUT", "/a", b"{}").fingerprint());
        assert_ne!(base, shape("POST", "/b", b"{}").fingerprint());
        assert_ne!(base, shape("POST", "/a", b"{ }").fingerprint());
        // Moving bytes from the path into the body is another request.
        assert_ne!(
            shape("POST", "/a", b"b").fingerprint(),
            shape("POST", "/ab", b"").fingerprint()
        );
    }
}
