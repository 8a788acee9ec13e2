//! Heartbeats and check-ins: the lease half of licensing. A heartbeat is a renewal in the
//! lease table and a token signed on the spot, no event; only when the table cannot renew the
//! lease (it died, or the projector has not written it yet) does it run a command, which
//! revives the device within its policy's resurrection window, or refuses.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::{
    lease_end, token_expiry, watches_deadlines, EffectiveTerms,
};
use flowlytix_aggregates::{
    DeviceId, PolicyTerms, Sha256Hex, Status, SubscriptionAction, SubscriptionError, SubscriptionId,
};

use super::token::{presented, LicenseClaims, TokenError};
use super::verdict::{judge, DeviceClaim, ValidationCode, Verdict};
use super::{LicenseSnapshot, Licensing, LicensingError};
use crate::monitoring::record;
use crate::store::{EventMetadata, ExecuteError};

/// What a heartbeat answers.
pub struct HeartbeatAnswer {
    pub lease_expires_at: DateTime<Utc>,
    pub borrowed_until: Option<DateTime<Utc>>,
    pub token: String,
    pub token_expires_at: DateTime<Utc>,
}

fn refused(error: SubscriptionError) -> LicensingError {
    LicensingError::Command(ExecuteError::Domain(error))
}

impl Licensing {
    /// A valid verdict on a device whose lease deadline (as the events gave it) has passed
    /// stands only if a heartbeat since moved the deadline on.
    pub(super) async fn judge_lease(
        &self,
        mut verdict: Verdict,
        now: DateTime<Utc>,
    ) -> Result<Verdict, LicensingError> {
        let deadline = verdict
            .device
            .as_ref()
            .filter(|_| verdict.is_valid() && watches_deadlines(verdict.policy.as_deref()))
            .and_then(|device| Some((device.id, device.lease.as_ref()?.expires_at?)));
        if let Some((device, deadline)) = deadline {
            if !self.commands.leases().alive(device, deadline, now).await? {
                verdict.code = ValidationCode::HeartbeatDead;
            }
        }
        Ok(verdict)
    }

    /// Renews the lease of the device the token names (to `borrow_until` when it borrows)
    /// and answers a fresh token that lasts no longer than the lease.
    pub async fn heartbeat(
        &self,
        token: &str,
        borrow_until: Option<DateTime<Utc>>,
        metadata: EventMetadata,
    ) -> Result<HeartbeatAnswer, LicensingError> {
        // The token expires with the lease: an expired one still names the device, which only
        // a revival (through the aggregate) may bring back.
        let (claims, expired) = match self.tokens.verify(token) {
            Err(TokenError::Expired) => (self.tokens.verify_expired(token)?, true),
            verified => (verified?, false),
        };
        let answer = self.beat(&claims, expired, borrow_until, metadata).await;
        record::heartbeat(match &answer {
            Ok((_, true)) => "revived",
            Ok((_, false)) => "renewed",
            Err(LicensingError::Command(ExecuteError::Domain(
                SubscriptionError::HeartbeatDead,
            ))) => "dead",
            Err(_) => "refused",
        });
        answer.map(|(answer, _)| answer)
    }

    /// The answer, and whether the device was revived.
    async fn beat(
        &self,
        claims: &LicenseClaims,
        token_expired: bool,
        borrow_until: Option<DateTime<Utc>>,
        metadata: EventMetadata,
    ) -> Result<(HeartbeatAnswer, bool), LicensingError> {
        let now = metadata.occurred_at;
        let subscription_id = SubscriptionId(claims.sid);
        let device_id = DeviceId(claims.sub);
        let presented = presented(claims);
        let license = self.current_license(subscription_id).await?;
        let policy = self.policy_of(&license).await;
        let terms = policy
            .as_deref()
            .ok_or(refused(SubscriptionError::HeartbeatNotRequired))?;
        let duration = terms
            .settings
            .lease_duration()
            .ok_or(refused(SubscriptionError::HeartbeatNotRequired))?;
        let deadline = lease_end(terms, borrow_until, duration.after(now), now).map_err(refused)?;
        let clock = self.commands.leases();
        // The table renews the lease in place (no event, no load) when the license, as
        // validation judges it, is valid on this very device; otherwise the command decides
        // (and says why not).
        let fingerprint_hash = Sha256Hex::parse(&claims.fpr).map_err(|_| TokenError::Invalid)?;
        let asking = DeviceClaim {
            fingerprint_hash,
            token: Some(presented.clone()),
        };
        let verdict = judge(Some(&license), policy.as_ref(), &asking, now);
        if verdict.code == ValidationCode::TokenRevoked {
            return Err(LicensingError::TokenRevoked);
        }
        let known = !token_expired && verdict.is_valid();
        let renewed = if known {
            clock.renew(device_id, now, deadline, borrow_until).await?
        } else {
            None
        };
        let (license, row, revived) = match renewed {
            Some(row) => (license, row, false),
            None => {
                let actions = vec![SubscriptionAction::Heartbeat {
                    presented,
                    borrow_until,
                }];
                let (committed, license) = self
                    .run_as_license(subscription_id, actions, metadata)
                    .await?;
                if token_expired && committed.events.is_empty() {
                    // Its lease lives on (renewed with a newer token): this one is just old.
                    return Err(TokenError::Expired.into());
                }
                let state = committed
                    .aggregate
                    .live()
                    .ok_or(LicensingError::LicenseNotFound)?;
                let lease = state
                    .device(device_id)
                    .and_then(|d| d.lease.clone())
                    .ok_or(refused(SubscriptionError::HeartbeatDead))?;
                clock.take(device_id, subscription_id, &lease).await?;
                let row = clock
                    .renew(device_id, now, deadline, borrow_until)
                    .await?
                    .ok_or(refused(SubscriptionError::HeartbeatDead))?;
                let license = license.ok_or(LicensingError::LicenseNotFound)?;
                (license, row, !committed.events.is_empty())
            }
        };
        let lease_expires_at = row.expires_at.unwrap_or(deadline);
        let effective = license.effective(Some(terms));
        let token_expires_at =
            self.token_expiry(&license, &effective, terms, lease_expires_at, now);
        let token = self
            .tokens
            .reissue(
                claims,
                &effective,
                license.expires_at,
                now,
                token_expires_at,
            )
            .map_err(LicensingError::Signing)?;
        Ok((
            HeartbeatAnswer {
                lease_expires_at,
                borrowed_until: row.borrowed_until,
                token,
                token_expires_at,
            },
            revived,
        ))
    }

    /// A heartbeat's token lasts as a refreshed one would, and never past the lease.
    fn token_expiry(
        &self,
        license: &LicenseSnapshot,
        effective: &EffectiveTerms,
        terms: &PolicyTerms,
        lease_end: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let license_end = effective.grace_until.or(license.expires_at);
        let trial_end = license
            .trial_ends_at
            .filter(|_| license.status == Status::Trialing);
        token_expiry(
            self.tokens.requested_expiry(now),
            Some(terms),
            license_end,
            trial_end,
            Some(lease_end),
            now,
        )
    }

    /// The license as validation has it (cached, else read from the store).
    async fn current_license(
        &self,
        id: SubscriptionId,
    ) -> Result<Arc<LicenseSnapshot>, LicensingError> {
        let license = match self.cached(id) {
            Some(license) => Some(license),
            None => self.license_from_store(id).await?,
        };
        license
            .filter(|l| !l.deleted)
            .ok_or(LicensingError::LicenseNotFound)
    }

    /// Gives the seat of the device the token names back at once: a floating seat is
    /// released; a node-locked device is deactivated as a client deactivation would be
    /// (within the churn limit).
    pub async fn checkin(
        &self,
        token: &str,
        metadata: EventMetadata,
    ) -> Result<(), LicensingError> {
        let claims = self.tokens.verify(token)?;
        let subscription_id = SubscriptionId(claims.sid);
        let actions = vec![SubscriptionAction::CheckIn {
            presented: presented(&claims),
        }];
        self.run_as_license(subscription_id, actions, metadata)
            .await?;
        Ok(())
    }
}
