//! `flowlytix policies adopt-plans`: moves subscriptions of their own onto policies, one
//! policy per distinct plan, by appending events (never rewriting one). A dry run first,
//! unless `--apply`; running it again finds nothing left to adopt.
//!
//! Each plan's policy takes the device limit most of its subscriptions have and the
//! entitlements all of them share; a subscription that differs keeps its own limit (an
//! override) and its extra entitlements (its own, on top of the policy's), so that what
//! every license grants is the same after as before. Periods stay on the subscriptions:
//! the policies get no duration.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use flowlytix_aggregates::subscription::Override;
use flowlytix_aggregates::{
    CatalogueError, Code, EntitlementId, PolicyId, ProductId, SubscriptionAction,
    SubscriptionError, SubscriptionId,
};
use serde_json::Map;

use crate::catalogue::{
    CatalogueFailure, CreateEntitlementRequest, CreatePolicyRequest, CreateProductRequest,
};
use crate::read::adoption::{custom_subscriptions, CustomSubscription};
use crate::store::{EventMetadata, ExecuteError};
use crate::App;

/// What adopting one plan means.
#[derive(Debug, Clone)]
pub struct PlannedPolicy {
    pub plan: String,
    pub max_devices: u32,
    /// The entitlements every subscription on the plan has.
    pub entitlements: Vec<String>,
    pub subscriptions: Vec<CustomSubscription>,
}

impl PlannedPolicy {
    /// How many of its subscriptions keep a device limit of their own.
    pub fn own_limits(&self) -> usize {
        self.subscriptions
            .iter()
            .filter(|s| s.max_devices as u32 != self.max_devices)
            .count()
    }

    /// How many keep entitlements beyond the policy's.
    pub fn own_entitlements(&self) -> usize {
        self.subscriptions
            .iter()
            .filter(|s| s.features.0.iter().any(|f| !self.entitlements.contains(f)))
            .count()
    }
}

/// One policy per distinct plan: the commonest device limit (the higher on a tie) and the
/// entitlements shared by all.
pub fn plan_adoption(subscriptions: Vec<CustomSubscription>) -> Vec<PlannedPolicy> {
    let mut by_plan: BTreeMap<String, Vec<CustomSubscription>> = BTreeMap::new();
    for subscription in subscriptions {
        by_plan
            .entry(subscription.plan.clone())
            .or_default()
            .push(subscription);
    }
    by_plan
        .into_iter()
        .map(|(plan, subscriptions)| {
            let mut limits: BTreeMap<u32, usize> = BTreeMap::new();
            for s in &subscriptions {
                *limits.entry(s.max_devices.max(1) as u32).or_default() += 1;
            }
            let max_devices = limits
                .iter()
                .max_by_key(|(limit, count)| (**count, **limit))
                .map_or(1, |(limit, _)| *limit);
            let mut shared: Option<BTreeSet<String>> = None;
            for s in &subscriptions {
                let own: BTreeSet<String> = s.features.0.iter().cloned().collect();
                shared = Some(match shared {
                    None => own,
                    Some(shared) => shared.intersection(&own).cloned().collect(),
                });
            }
            PlannedPolicy {
                plan,
                max_devices,
                entitlements: shared.unwrap_or_default().into_iter().collect(),
                subscriptions,
            }
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("--product must be a code (a-z, 0-9, '-', '_'; 1 to 64)")]
    InvalidProduct,
    #[error("the catalogue refused: {0}")]
    Catalogue(#[from] CatalogueFailure),
    #[error("a subscription command failed: {0}")]
    Subscription(#[from] ExecuteError<SubscriptionError>),
    #[error("the database failed: {0}")]
    Read(#[from] sqlx::Error),
}

/// What a run did (or, dry, would do).
#[derive(Debug, Default)]
pub struct Adopted {
    pub lines: Vec<String>,
    pub subscriptions: usize,
    /// Subscriptions that changed between the read and their command: left as they are.
    pub skipped: usize,
}

pub async fn adopt_plans(app: &App, product: &str, apply: bool) -> Result<Adopted, AdoptError> {
    let product_code = Code::parse(product).map_err(|_| AdoptError::InvalidProduct)?;
    let planned = plan_adoption(custom_subscriptions(&app.db).await?);
    let mut adopted = Adopted::default();
    let verb = if apply { "" } else { "would " };
    if planned.is_empty() {
        adopted
            .lines
            .push("nothing to adopt: every live subscription follows a policy".into());
        return Ok(adopted);
    }
    if apply {
        ensure_catalogue(app, &product_code, &planned).await?;
    }
    for policy in &planned {
        adopted.lines.push(format!(
            "{verb}make {} subscription(s) on plan {:?} follow policy {}/{} \
             (max_devices {}, entitlements [{}]); {} keep their own device limit, {} their own extra entitlements",
            policy.subscriptions.len(),
            policy.plan,
            product_code,
            policy.plan,
            policy.max_devices,
            policy.entitlements.join(", "),
            policy.own_limits(),
            policy.own_entitlements(),
        ));
        adopted.subscriptions += policy.subscriptions.len();
        if apply {
            adopted.skipped += follow(app, &product_code, policy).await?;
        }
    }
    Ok(adopted)
}

/// The product, the entitlements the policies name and the policies, each created unless
/// it exists (so that a second run, or one after a partial run, goes on where it stopped).
async fn ensure_catalogue(
    app: &App,
    product: &Code,
    planned: &[PlannedPolicy],
) -> Result<(), AdoptError> {
    let metadata = || EventMetadata::system(Utc::now());
    let product_id = ProductId::for_code(product);
    // Created, or there already: either way it exists now.
    let exists = |result: Result<(), CatalogueFailure>| match result {
        Err(CatalogueFailure::Command {
            error: ExecuteError::Domain(CatalogueError::AlreadyExists),
            ..
        }) => Ok(()),
        other => other,
    };
    if app.catalogue.product(product_id).await.is_err() {
        let request = CreateProductRequest {
            name: product.to_string(),
            code: product.to_string(),
            url: None,
            metadata: None,
        };
        exists(
            app.catalogue
                .create_product(request, metadata())
                .await
                .map(|_| ()),
        )?;
    }
    let codes: BTreeSet<&String> = planned.iter().flat_map(|p| &p.entitlements).collect();
    for code in codes {
        let parsed = Code::parse(code).map_err(|_| AdoptError::InvalidProduct)?;
        if app
            .catalogue
            .entitlement(EntitlementId::for_code(&parsed))
            .await
            .is_err()
        {
            let request = CreateEntitlementRequest {
                code: code.clone(),
                name: code.clone(),
            };
            exists(
                app.catalogue
                    .create_entitlement(request, metadata())
                    .await
                    .map(|_| ()),
            )?;
        }
    }
    for policy in planned {
        let request: CreatePolicyRequest = serde_json::from_value(serde_json::json!({
            "product_id": product_id.as_uuid(),
            "name": policy.plan,
            "code": policy.plan,
            "max_devices": policy.max_devices,
            "entitlements": policy.entitlements,
            "metadata": Map::from_iter([("adopted_plan".to_owned(), policy.plan.clone().into())]),
        }))
        .map_err(|e| CatalogueFailure::InvalidCode(e.to_string()))?;
        exists(
            app.catalogue
                .create_policy(request, metadata())
                .await
                .map(|_| ()),
        )?;
    }
    Ok(())
}

/// Makes each subscription follow its plan's policy, keeping what it had of its own.
/// Returns how many were skipped because they changed since they were read.
async fn follow(app: &App, product: &Code, policy: &PlannedPolicy) -> Result<usize, AdoptError> {
    let plan = Code::parse(&policy.plan).map_err(|_| AdoptError::InvalidProduct)?;
    let policy_id = PolicyId::for_code(ProductId::for_code(product), &plan);
    let mut skipped = 0;
    for subscription in &policy.subscriptions {
        let own_limit = subscription.max_devices as u32 != policy.max_devices;
        let extras: Vec<String> = subscription
            .features
            .0
            .iter()
            .filter(|f| !policy.entitlements.contains(f))
            .cloned()
            .collect();
        let action = SubscriptionAction::FollowPolicy {
            policy_id: Some(policy_id),
            overrides: own_limit
                .then_some(Override::MaxDevices)
                .into_iter()
                .collect(),
            features: Some(extras),
        };
        let result = app
            .subscriptions
            .commands()
            .run(
                SubscriptionId(subscription.id),
                vec![action],
                EventMetadata::system(Utc::now()),
                Some(subscription.version.max(0) as u64),
            )
            .await;
        match result {
            Ok(_) => {}
            Err(ExecuteError::VersionMismatch { .. }) => skipped += 1,
            Err(other) => return Err(other.into()),
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use sqlx::types::Json;
    use uuid::Uuid;

    use super::*;

    fn subscription(plan: &str, max_devices: i32, features: &[&str]) -> CustomSubscription {
        CustomSubscription {
            id: Uuid::new_v4(),
            plan: plan.into(),
            max_devices,
            features: Json(features.iter().map(|f| f.to_string()).collect()),
            version: 2,
        }
    }

    #[test]
    fn each_plan_gets_its_commonest_limit_and_the_entitlements_all_share() {
        let planned = plan_adoption(vec![
            subscription("pro", 3, &["export", "sync"]),
            subscription("pro", 3, &["export"]),
            subscription("pro", 5, &["export", "admin"]),
            subscription("basic", 1, &[]),
        ]);
        assert_eq!(planned.len(), 2);
        let basic = &planned[0];
        assert_eq!((basic.plan.as_str(), basic.max_devices), ("basic", 1));
        assert!(basic.entitlements.is_empty());
        let pro = &planned[1];
        assert_eq!(pro.max_devices, 3);
        assert_eq!(pro.entitlements, vec!["export".to_owned()]);
        assert_eq!(pro.own_limits(), 1);
        assert_eq!(pro.own_entitlements(), 2);
    }

    #[test]
    fn a_tie_between_limits_takes_the_higher() {
        let planned = plan_adoption(vec![
            subscription("team", 2, &[]),
            subscription("team", 5, &[]),
        ]);
        assert_eq!(planned[0].max_devices, 5);
        assert_eq!(planned[0].own_limits(), 1);
    }
}
