//! Subscriptions: the one way their commands run, and the admin operations behind
//! `/api/v1/subscriptions` and `/api/v1/devices` (the HTTP handlers only parse and respond).

#[cfg(test)]
mod deadline_tests;
pub mod deadlines;
mod devices;
mod manage;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::{
    PolicyBook, Subscription, SubscriptionAction, SubscriptionCommand, SubscriptionError,
    SubscriptionId,
};
use flowlytix_projections::Db;

pub use devices::DeviceFound;
pub use manage::{
    entitlement_codes, policy_id, CreateSubscriptionRequest, Created, ManageError,
    RegenerateKeyRequest, StatusChange, UpdateSubscriptionRequest, MAX_FEATURES,
    MAX_METADATA_BYTES,
};

use crate::catalogue::Policies;
use crate::leases::LeaseClock;
use crate::licensing::{LicenseCache, LicenseSnapshot};
use crate::store::{Committed, EventMetadata, ExecuteError, Executor, Lookup};
use flowlytix_aggregates::subscription::LeaseRenewals;

/// The admin operations on subscriptions and their devices (`manage`, `devices`): they run
/// subscription commands and find a device's subscription, nothing more.
pub struct SubscriptionAdmin {
    commands: Arc<SubscriptionCommands>,
    lookup: Lookup,
}

impl SubscriptionAdmin {
    pub fn new(commands: Arc<SubscriptionCommands>, lookup: Lookup) -> Self {
        Self { commands, lookup }
    }

    /// The commands themselves, for callers that build their own action lists.
    pub fn commands(&self) -> &SubscriptionCommands {
        &self.commands
    }

    /// The same commands, for a service of its own (the deadline scheduler).
    pub fn shared_commands(&self) -> Arc<SubscriptionCommands> {
        self.commands.clone()
    }
}

fn reload_failed(
    error: ExecuteError<flowlytix_aggregates::CatalogueError>,
) -> ExecuteError<SubscriptionError> {
    match error {
        ExecuteError::Store(error) => ExecuteError::Store(error),
        other => ExecuteError::Store(Box::new(std::io::Error::other(other.to_string()))),
    }
}

/// Runs subscription commands: every action of a call is stamped with the instant in its
/// metadata and carries the policies' terms as this instance has them, all of them commit
/// atomically or none, and validation on this instance sees the result at once, ahead of
/// the read model.
pub struct SubscriptionCommands {
    executor: Executor<Subscription>,
    licenses: Arc<LicenseCache>,
    policies: Arc<Policies>,
    leases: Arc<LeaseClock>,
}

impl SubscriptionCommands {
    pub fn new(
        db: Db,
        licenses: Arc<LicenseCache>,
        policies: Arc<Policies>,
        leases: Arc<LeaseClock>,
    ) -> Self {
        Self {
            executor: Executor::new(db),
            licenses,
            policies,
            leases,
        }
    }

    /// The policies commands decide with (and validation judges by).
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// The lease renewals commands decide with.
    pub fn leases(&self) -> &Arc<LeaseClock> {
        &self.leases
    }

    /// The renewals of the subscription's leases, read only while some policy has leases:
    /// a server that uses none pays no read per command.
    async fn renewals(
        &self,
        id: SubscriptionId,
        book: &PolicyBook,
    ) -> Result<LeaseRenewals, ExecuteError<SubscriptionError>> {
        if !book.iter().any(|terms| terms.settings.leases()) {
            return Ok(LeaseRenewals::default());
        }
        self.leases
            .renewals(id)
            .await
            .map_err(|error| ExecuteError::Store(Box::new(error)))
    }

    pub async fn run(
        &self,
        id: SubscriptionId,
        actions: Vec<SubscriptionAction>,
        metadata: EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<Subscription>, ExecuteError<SubscriptionError>> {
        let (committed, _) = self
            .run_remembering(id, actions, metadata, expected_version)
            .await?;
        Ok(committed)
    }

    /// `run`, and the license it wrote through to the cache (none once the subscription is
    /// gone): a token's answer shows that license, and building it again would copy every
    /// active device once more.
    pub async fn run_remembering(
        &self,
        id: SubscriptionId,
        actions: Vec<SubscriptionAction>,
        metadata: EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<
        (Committed<Subscription>, Option<Arc<LicenseSnapshot>>),
        ExecuteError<SubscriptionError>,
    > {
        let at = metadata.occurred_at;
        let era = self.licenses.era();
        let commands = |policies: PolicyBook, leases: LeaseRenewals| -> Vec<SubscriptionCommand> {
            actions
                .iter()
                .cloned()
                .map(|action| {
                    SubscriptionCommand::new(at, action)
                        .with_policies(policies.clone())
                        .with_leases(leases.clone())
                })
                .collect()
        };
        let book = self.policies.book();
        let renewals = self.renewals(id, &book).await?;
        let first = self
            .executor
            .execute(
                &id.to_string(),
                commands(book, renewals.clone()),
                metadata.clone(),
                expected_version,
            )
            .await;
        let committed = match first {
            // A policy this instance has not heard of (made by a command-line run, or
            // announced while its notices were down): read them all again, decide again.
            Err(ExecuteError::Domain(SubscriptionError::PolicyNotFound)) => {
                self.policies.load_all().await.map_err(reload_failed)?;
                self.executor
                    .execute(
                        &id.to_string(),
                        commands(self.policies.book(), renewals),
                        metadata,
                        expected_version,
                    )
                    .await?
            }
            other => other?,
        };
        let license = committed.aggregate.state().map(|state| {
            self.licenses
                .remember(LicenseSnapshot::from_state(state, committed.version), era)
        });
        Ok((committed, license))
    }

    /// The subscription as it is now, and its version.
    pub async fn load(
        &self,
        id: SubscriptionId,
    ) -> Result<(Subscription, u64), ExecuteError<SubscriptionError>> {
        self.executor.load(&id.to_string()).await
    }

    /// The subscription as it was at `instant`, and the version it had then.
    pub async fn load_as_of(
        &self,
        id: SubscriptionId,
        instant: DateTime<Utc>,
    ) -> Result<(Subscription, u64), ExecuteError<SubscriptionError>> {
        self.executor.load_as_of(&id.to_string(), instant).await
    }
}
