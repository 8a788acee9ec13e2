//! The operations client apps call: activate, validate, refresh, deactivate. Each takes a
//! parsed request, runs one subscription command list (or reads the license cache), and
//! returns what the HTTP layer renders. [`Licensing`] holds exactly the handles they use.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::subscription::EffectiveTerms;
use flowlytix_aggregates::PolicyTerms;
use flowlytix_aggregates::{
    DeactivationReason, DeviceDetails, DeviceId, DeviceInfo, Sha256Hex, Subscription,
    SubscriptionAction, SubscriptionError, SubscriptionEvent, SubscriptionId,
};
use uuid::Uuid;

use super::token::{presented, LicenseTokens, TokenError};
use super::verdict::{judge, token_claim, DeviceClaim, Scope, ValidationCode, Verdict};
use super::{LicenseCache, LicenseSnapshot};
use crate::crypto::sha256_hex;
use crate::monitoring::record;
use crate::store::{Committed, EventMetadata, ExecuteError, Lookup};
use crate::subscriptions::SubscriptionCommands;

pub const MAX_FINGERPRINT_LEN: usize = 512;

/// How a client proves which license it speaks for.
pub enum Credential {
    LicenseKey(LicenseKey),
    Token(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LicensingError {
    #[error("fingerprint must be 1 to {MAX_FINGERPRINT_LEN} characters")]
    InvalidFingerprint,
    /// Unknown, deleted and superseded keys alike: a client learns nothing more.
    #[error("no license matches this key")]
    LicenseNotFound,
    #[error("this device is not activated")]
    DeviceNotActivated,
    #[error("the token was issued to another device")]
    FingerprintMismatch,
    #[error("the token was issued under a license key that has since been regenerated")]
    TokenRevoked,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Command(ExecuteError<SubscriptionError>),
    #[error(transparent)]
    Read(#[from] sqlx::Error),
    #[error("cannot sign the license token")]
    Signing(#[source] jsonwebtoken::errors::Error),
    #[error("a token command committed without its token: {0}")]
    TokenNotRecorded(&'static str),
    /// The license does not match the scope the client asked for (`code` says how).
    #[error("{}", .code.detail())]
    OutOfScope {
        code: ValidationCode,
        missing_entitlements: Vec<String>,
    },
}

impl From<ExecuteError<SubscriptionError>> for LicensingError {
    fn from(error: ExecuteError<SubscriptionError>) -> Self {
        match error {
            ExecuteError::Domain(
                SubscriptionError::NotFound
                | SubscriptionError::Deleted
                | SubscriptionError::LicenseKeyMismatch,
            ) => Self::LicenseNotFound,
            ExecuteError::Domain(SubscriptionError::DeviceNotActivated) => Self::DeviceNotActivated,
            ExecuteError::Domain(SubscriptionError::TokenRevoked) => Self::TokenRevoked,
            other => Self::Command(other),
        }
    }
}

/// A credential as validation judges it: a key, or a token's verified claims (those of an
/// expired token too, judged on to tell a dead lease from a plain expiry).
enum Presented {
    Key(LicenseKey),
    Token(Result<Box<super::token::LicenseClaims>, TokenError>),
}

/// A signed license token and the license it was issued under.
pub struct TokenIssued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub device_id: DeviceId,
    pub license: Arc<LicenseSnapshot>,
    /// What the license grants, as the token states it.
    pub terms: EffectiveTerms,
    pub position: i64,
}

/// The stored form of a device fingerprint.
pub fn fingerprint_hash(raw: &str) -> Result<Sha256Hex, LicensingError> {
    // The length as sent, in characters (as the OpenAPI document's maxLength counts).
    let too_long = raw.chars().count() > MAX_FINGERPRINT_LEN;
    let raw = raw.trim();
    if raw.is_empty() || too_long {
        return Err(LicensingError::InvalidFingerprint);
    }
    Ok(sha256_hex(raw))
}

fn license_actor(id: SubscriptionId) -> String {
    format!("license:{id}")
}

/// Client-app licensing: the subscription commands it runs, the key lookup, the token
/// signer and the validation cache, and nothing else.
pub struct Licensing {
    pub(super) commands: Arc<SubscriptionCommands>,
    lookup: Lookup,
    pub(super) tokens: LicenseTokens,
    cache: Arc<LicenseCache>,
}

impl Licensing {
    pub fn new(
        commands: Arc<SubscriptionCommands>,
        lookup: Lookup,
        tokens: LicenseTokens,
        cache: Arc<LicenseCache>,
    ) -> Self {
        Self {
            commands,
            lookup,
            tokens,
            cache,
        }
    }

    /// The token signer (the public key endpoints show its keys).
    pub fn tokens(&self) -> &LicenseTokens {
        &self.tokens
    }

    /// The cached license, while it is trusted.
    pub(super) fn cached(&self, id: SubscriptionId) -> Option<Arc<LicenseSnapshot>> {
        self.cache.fresh(id, false)
    }

    /// The validation cache (the change follower keeps it fresh).
    pub fn cache(&self) -> &LicenseCache {
        &self.cache
    }

    /// Which subscription a license key names, straight from the event log (right the moment a
    /// command commits); the command's `VerifyLicenseKey` then rejects a superseded key.
    async fn subscription_for_key(
        &self,
        key: &LicenseKey,
    ) -> Result<(SubscriptionId, Sha256Hex), LicensingError> {
        let key_hash = sha256_hex(key.expose());
        let id = self
            .lookup
            .subscription_by_key_hash(&key_hash)
            .await?
            .ok_or(LicensingError::LicenseNotFound)?;
        Ok((id, key_hash))
    }

    /// Activates the key on the device and issues its first token, atomically. Re-activating
    /// an active fingerprint keeps the device and issues a fresh token.
    pub async fn activate(
        &self,
        key: LicenseKey,
        fingerprint_hash: Sha256Hex,
        info: DeviceInfo,
        scope: &Scope,
        metadata: EventMetadata,
    ) -> Result<TokenIssued, LicensingError> {
        let (subscription_id, key_hash) = self.subscription_for_key(&key).await?;
        if scope.is_given() {
            self.ensure_within(subscription_id, &key_hash, scope)
                .await?;
        }
        let now = metadata.occurred_at;
        let actions = vec![
            SubscriptionAction::VerifyLicenseKey { key_hash },
            SubscriptionAction::ActivateDevice(DeviceDetails {
                device_id: DeviceId(Uuid::new_v4()),
                fingerprint_hash: fingerprint_hash.clone(),
                info,
            }),
            SubscriptionAction::IssueLicenseToken {
                fingerprint_hash,
                token_id: Uuid::new_v4(),
                expires_at: self.tokens.requested_expiry(now),
            },
        ];
        let committed = self
            .run_as_license(subscription_id, actions, metadata)
            .await?;
        self.sign_issued_token(committed)
    }

    /// Refuses an activation whose scope the license does not match, before anything is
    /// written. (The key is checked by the command that follows.)
    async fn ensure_within(
        &self,
        id: SubscriptionId,
        key_hash: &Sha256Hex,
        scope: &Scope,
    ) -> Result<(), LicensingError> {
        let license = match self.cache.fresh(id, false) {
            Some(license) => Some(license),
            None => self.license_from_store(id).await?,
        };
        let license = license
            .filter(|l| !l.deleted)
            .filter(|l| l.license_key.as_ref().map(|k| &k.key_hash) == Some(key_hash))
            .ok_or(LicensingError::LicenseNotFound)?;
        let policy = self.policy_of(&license).await;
        let terms = license.effective(policy.as_deref());
        match scope.mismatch(&terms) {
            None => Ok(()),
            Some((code, missing_entitlements)) => Err(LicensingError::OutOfScope {
                code,
                missing_entitlements,
            }),
        }
    }

    /// The verdict on a credential for one device, within what the client asked for. Only
    /// a malformed request is an error.
    pub async fn validate(
        &self,
        credential: Credential,
        fingerprint_hash: Sha256Hex,
        scope: &Scope,
        now: DateTime<Utc>,
    ) -> Result<Verdict, LicensingError> {
        Ok(self
            .judge_credential(credential, fingerprint_hash, now)
            .await?
            .within(scope))
    }

    async fn judge_credential(
        &self,
        credential: Credential,
        fingerprint_hash: Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<Verdict, LicensingError> {
        // An expired token of a leased device is judged on: its lease may be dead, which
        // says more than "expired" (the token expires with the lease).
        let mut expired = false;
        let presented = match credential {
            Credential::LicenseKey(key) => Presented::Key(key),
            Credential::Token(token) => Presented::Token(
                match self.tokens.verify(&token) {
                    Err(TokenError::Expired) => {
                        expired = true;
                        self.tokens.verify_expired(&token)
                    }
                    verified => verified,
                }
                .map(Box::new),
            ),
        };
        let verdict = self
            .judge_by_events(presented, fingerprint_hash, now)
            .await?;
        let verdict = self.judge_lease(verdict, now).await?;
        Ok(match verdict.code {
            ValidationCode::HeartbeatDead if expired => Verdict::refused(verdict.code),
            _ if expired => Verdict::refused(ValidationCode::TokenExpired),
            _ => verdict,
        })
    }

    /// The verdict the license's events give.
    async fn judge_by_events(
        &self,
        presented: Presented,
        fingerprint_hash: Sha256Hex,
        now: DateTime<Utc>,
    ) -> Result<Verdict, LicensingError> {
        let (subscription_id, key_hash, device) = match presented {
            Presented::Key(key) => {
                let key_hash = sha256_hex(key.expose());
                let device = DeviceClaim {
                    fingerprint_hash,
                    token: None,
                };
                let Some(id) = self.lookup.subscription_by_key_hash(&key_hash).await? else {
                    // An unknown key is a miss too: it cost a read of the event log.
                    record::license_cache(false);
                    return Ok(judge(None, None, &device, now));
                };
                (id, Some(key_hash), device)
            }
            Presented::Token(verified) => {
                match token_claim(verified.map(|claims| *claims), &fingerprint_hash) {
                    Ok((id, device)) => (id, None, device),
                    Err(code) => return Ok(Verdict::refused(code)),
                }
            }
        };
        // A superseded key names its subscription still, but no license.
        let names = |license: &LicenseSnapshot| {
            key_hash.is_none()
                || license.license_key.as_ref().map(|k| &k.key_hash) == key_hash.as_ref()
        };
        if let Some(cached) = self.cache.fresh(subscription_id, false) {
            let policy = self.policy_of(&cached).await;
            let verdict = judge(
                Some(&cached).filter(|l| names(l)),
                policy.as_ref(),
                &device,
                now,
            );
            if verdict.code == ValidationCode::Valid
                || self.cache.fresh(subscription_id, true).is_some()
            {
                return Ok(verdict);
            }
        }
        let license = self.license_from_store(subscription_id).await?;
        let policy = match &license {
            Some(license) => self.policy_of(license).await,
            None => None,
        };
        Ok(judge(
            license.as_ref().filter(|l| names(l)),
            policy.as_ref(),
            &device,
            now,
        ))
    }

    /// The terms of the policy `license` follows. Policies are all in memory, so this costs
    /// no read, unless this instance has not heard of that policy (made by a command-line
    /// run on the embedded store, or announced while the notices were down): then it is
    /// read once.
    pub(super) async fn policy_of(&self, license: &LicenseSnapshot) -> Option<Arc<PolicyTerms>> {
        let id = license.policy_id?;
        let book = self.commands.policies().covering([id]).await;
        book.get(id).cloned()
    }

    /// The license as the write side has it now, remembered for the next validation.
    pub(super) async fn license_from_store(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Arc<LicenseSnapshot>>, LicensingError> {
        if !self.reload(id).await? {
            return Ok(None);
        }
        // What was just read, unless a newer write-through overtook it.
        Ok(self.cache.newest(id))
    }

    /// Reads the subscription from the write side into the validation cache; `false` when
    /// it has no license (never created, or deleted).
    pub async fn reload(
        &self,
        id: SubscriptionId,
    ) -> Result<bool, ExecuteError<SubscriptionError>> {
        let era = self.cache.era();
        let (subscription, version) = self.commands.load(id).await?;
        let Some(state) = subscription.state() else {
            return Ok(false);
        };
        self.cache
            .remember(LicenseSnapshot::from_state(state, version), era);
        Ok(true)
    }

    /// A fresh token for the device a valid token names, while the license is usable, the
    /// token's key is current and that very device is active (as validate judges it).
    pub async fn refresh(
        &self,
        token: &str,
        metadata: EventMetadata,
    ) -> Result<TokenIssued, LicensingError> {
        let claims = self.tokens.verify(token)?;
        let fingerprint_hash = Sha256Hex::parse(&claims.fpr).map_err(|_| TokenError::Invalid)?;
        let subscription_id = SubscriptionId(claims.sid);
        let actions = vec![
            SubscriptionAction::VerifyLicenseToken {
                presented: presented(&claims),
            },
            SubscriptionAction::IssueLicenseToken {
                fingerprint_hash,
                token_id: Uuid::new_v4(),
                expires_at: self.tokens.requested_expiry(metadata.occurred_at),
            },
        ];
        let committed = self
            .run_as_license(subscription_id, actions, metadata)
            .await?;
        self.sign_issued_token(committed)
    }

    /// Frees the slot of the device with this fingerprint: one command, one load.
    pub async fn deactivate(
        &self,
        credential: Credential,
        fingerprint_hash: Sha256Hex,
        metadata: EventMetadata,
    ) -> Result<(), LicensingError> {
        let (subscription_id, credential_check) = match credential {
            Credential::LicenseKey(key) => {
                let (id, key_hash) = self.subscription_for_key(&key).await?;
                (id, Some(SubscriptionAction::VerifyLicenseKey { key_hash }))
            }
            Credential::Token(token) => {
                let claims = self.tokens.verify(&token)?;
                if claims.fpr != fingerprint_hash.as_str() {
                    return Err(LicensingError::FingerprintMismatch);
                }
                let presented = presented(&claims);
                (
                    SubscriptionId(claims.sid),
                    Some(SubscriptionAction::VerifyLicenseToken { presented }),
                )
            }
        };
        // The credential check goes first, so a superseded key is refused as unknown (and a
        // revoked token as revoked) before anything is said about the devices.
        let actions = credential_check
            .into_iter()
            .chain([SubscriptionAction::DeactivateDeviceByFingerprint {
                fingerprint_hash,
                reason: DeactivationReason::Client,
            }])
            .collect();
        self.run_as_license(subscription_id, actions, metadata)
            .await?;
        Ok(())
    }

    /// Runs a client's command list: the license is the actor, and the license it wrote
    /// through to the cache comes back with what was committed.
    pub(super) async fn run_as_license(
        &self,
        id: SubscriptionId,
        actions: Vec<SubscriptionAction>,
        metadata: EventMetadata,
    ) -> Result<
        (Committed<Subscription>, Option<Arc<LicenseSnapshot>>),
        ExecuteError<SubscriptionError>,
    > {
        let metadata = EventMetadata {
            actor: license_actor(id),
            ..metadata
        };
        self.commands
            .run_remembering(id, actions, metadata, None)
            .await
    }

    /// Signs the token recorded by the `LicenseTokenIssued` event of a committed command.
    fn sign_issued_token(
        &self,
        (committed, license): (Committed<Subscription>, Option<Arc<LicenseSnapshot>>),
    ) -> Result<TokenIssued, LicensingError> {
        let license = license.ok_or(LicensingError::LicenseNotFound)?;
        let state = committed
            .aggregate
            .live()
            .ok_or(LicensingError::LicenseNotFound)?;
        let (device_id, token_id, expires_at, issued_at) = committed
            .events
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                SubscriptionEvent::LicenseTokenIssued {
                    device_id,
                    token_id,
                    expires_at,
                    at,
                } => Some((*device_id, *token_id, *expires_at, *at)),
                _ => None,
            })
            .ok_or(LicensingError::TokenNotRecorded(
                "no LicenseTokenIssued event",
            ))?;
        let device = state
            .device(device_id)
            .ok_or(LicensingError::TokenNotRecorded("the device is unknown"))?;
        let terms = state.effective(&self.commands.policies().book());
        let token = self
            .tokens
            .sign(state, &terms, device, token_id, issued_at, expires_at)
            .map_err(LicensingError::Signing)?;
        Ok(TokenIssued {
            token,
            expires_at,
            device_id,
            license,
            terms,
            position: committed.position,
        })
    }
}
