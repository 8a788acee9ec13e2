//! Every policy's terms in memory, for the subscription commands that decide with them and
//! for validation. Policies are few (a vendor has tens, not thousands), so all of them are
//! loaded at start and kept: a command or a validation never waits for one. Each instance
//! keeps its copy current: its own policy commands write through, and on PostgreSQL it
//! follows the store's policy notices (migration 0016) and reloads the policy that changed,
//! so a change reaches every instance's validation as it commits, with no event per
//! subscription.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use flowlytix_aggregates::{CatalogueError, Policy, PolicyBook, PolicyCommand, PolicyId};
use flowlytix_eventstore::Db;
use sqlx::postgres::PgPool;
use tokio::sync::watch;

use crate::store::notices::PolicyChanges;
use crate::store::{Committed, EventMetadata, ExecuteError, Executor, Lookup};

pub struct Policies {
    executor: Executor<Policy>,
    lookup: Lookup,
    book: RwLock<PolicyBook>,
}

impl Policies {
    pub fn new(db: Db, lookup: Lookup) -> Self {
        Self {
            executor: Executor::new(db),
            lookup,
            book: RwLock::new(PolicyBook::default()),
        }
    }

    /// Every policy's terms as this instance has them now (a shared map: cheap to clone).
    pub fn book(&self) -> PolicyBook {
        self.book
            .read()
            .map(|book| book.clone())
            .unwrap_or_default()
    }

    /// The book, with any of `ids` this instance has not heard of read first (a policy made
    /// by a command-line run on the embedded store, or announced while the notices were
    /// down). Costs nothing when it has them all, as it normally does.
    pub async fn covering(&self, ids: impl IntoIterator<Item = PolicyId>) -> PolicyBook {
        let book = self.book();
        let missing: Vec<PolicyId> = ids
            .into_iter()
            .filter(|id| book.get(*id).is_none())
            .collect();
        if missing.is_empty() {
            return book;
        }
        for id in missing {
            if let Err(error) = self.reload(id).await {
                tracing::warn!(policy = %id, %error, "cannot read a policy a subscription follows");
            }
        }
        self.book()
    }

    /// Reads every policy from the store (at start, and after notices may have been missed).
    pub async fn load_all(&self) -> Result<usize, ExecuteError<CatalogueError>> {
        let ids = self
            .lookup
            .aggregate_ids(POLICY_TYPE)
            .await
            .map_err(|error| ExecuteError::Store(Box::new(error)))?;
        let count = ids.len();
        for id in ids {
            self.reload(PolicyId(id)).await?;
        }
        Ok(count)
    }

    /// Reads one policy from the store into the book.
    pub async fn reload(&self, id: PolicyId) -> Result<(), ExecuteError<CatalogueError>> {
        let (policy, version) = self.executor.load(&id.to_string()).await?;
        self.remember(&policy, version);
        Ok(())
    }

    /// Runs policy commands and puts the result in the book at once.
    pub async fn run(
        &self,
        id: PolicyId,
        commands: Vec<PolicyCommand>,
        metadata: EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<Policy>, ExecuteError<CatalogueError>> {
        let committed = self
            .executor
            .execute(&id.to_string(), commands, metadata, expected_version)
            .await?;
        self.remember(&committed.aggregate, committed.version);
        Ok(committed)
    }

    /// The policy as the store has it now, and its version.
    pub async fn load(&self, id: PolicyId) -> Result<(Policy, u64), ExecuteError<CatalogueError>> {
        self.executor.load(&id.to_string()).await
    }

    /// Keeps the newer of what the book has and `policy` at `version`.
    fn remember(&self, policy: &Policy, version: u64) {
        let Some(terms) = policy.terms(version) else {
            return;
        };
        let Ok(mut book) = self.book.write() else {
            return;
        };
        let newer = book
            .get(terms.policy_id)
            .is_none_or(|held| held.version < version);
        if newer {
            *book = book.with(Arc::new(terms));
        }
    }
}

const POLICY_TYPE: &str = <Policy as cqrs_es::Aggregate>::TYPE;

/// Follows the store's policy notices until `shutdown` flips, reconnecting (and reading
/// every policy again, for the notices missed meanwhile) when the connection drops.
pub async fn follow_policy_changes(
    policies: Arc<Policies>,
    pool: PgPool,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let followed = tokio::select! {
            result = follow(&policies, &pool) => result,
            _ = shutdown.changed() => return,
        };
        if let Err(error) = followed {
            tracing::warn!(%error, "lost the policy change notices; reconnecting");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn follow(policies: &Policies, pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut changes = PolicyChanges::listen(pool).await?;
    // Listening now: whatever changed before is read afresh.
    if let Err(error) = policies.load_all().await {
        tracing::warn!(%error, "cannot read the policies; keeping the ones held");
    }
    loop {
        let id = changes.next().await?;
        if let Err(error) = policies.reload(PolicyId(id)).await {
            tracing::warn!(policy = %id, %error, "cannot read a changed policy");
        }
    }
}
