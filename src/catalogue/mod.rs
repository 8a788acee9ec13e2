//! The licensing catalogue: products, entitlements and the policies subscriptions follow.
//!
//! [`Catalogue`] is what admins do to it (`/api/v1/products`, `/entitlements`, `/policies`;
//! the handlers only parse and respond). The rules that span aggregates are kept here, in
//! the open: a policy names a live product and known entitlements; a product is deleted
//! only while no policy names it, an entitlement only while no policy and no live
//! subscription does.

mod entitlements;
mod policies;
mod policy_admin;
mod products;

pub use entitlements::{CreateEntitlementRequest, UpdateEntitlementRequest};
pub use policies::{follow_policy_changes, Policies};
pub use policy_admin::{
    AttachEntitlementsRequest, Basis, CreatePolicyRequest, Cull, Model, Strategy,
    UpdatePolicyRequest, LATER_FIELDS,
};
pub use products::{CreateProductRequest, UpdateProductRequest};

use std::sync::Arc;

use flowlytix_aggregates::{CatalogueError, Code, Entitlement, IsoDuration, Product};
use flowlytix_projections::Db;
use serde::{Deserialize, Deserializer};

use crate::store::{ExecuteError, Executor};

/// Which kind of catalogue item an answer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Product,
    Entitlement,
    Policy,
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Item::Product => "product",
            Item::Entitlement => "entitlement",
            Item::Policy => "policy",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueFailure {
    #[error("{0}")]
    InvalidCode(String),
    #[error("{0}")]
    InvalidDuration(String),
    /// A field of a later issue (`license_model`, heartbeats, borrowing...), not built yet.
    #[error("{0} is not supported yet")]
    UnsupportedField(&'static str),
    #[error("no such {0}")]
    NotFound(Item),
    /// The product a new policy names does not exist (or was deleted).
    #[error("product_id names no product")]
    UnknownProduct,
    #[error("unknown entitlements: {}", .0.join(", "))]
    UnknownEntitlements(Vec<String>),
    #[error("{detail}")]
    InUse { item: Item, detail: String },
    #[error("the {item} command failed: {error}")]
    Command {
        item: Item,
        #[source]
        error: ExecuteError<CatalogueError>,
    },
    #[error(transparent)]
    Read(#[from] sqlx::Error),
}

impl CatalogueFailure {
    fn command(item: Item) -> impl Fn(ExecuteError<CatalogueError>) -> Self {
        move |error| Self::Command { item, error }
    }
}

/// Runs the catalogue's commands with the checks across aggregates that come first.
pub struct Catalogue {
    products: Executor<Product>,
    entitlements: Executor<Entitlement>,
    policies: Arc<Policies>,
    db: Db,
}

impl Catalogue {
    pub fn new(db: Db, policies: Arc<Policies>) -> Self {
        Self {
            products: Executor::new(db.clone()),
            entitlements: Executor::new(db.clone()),
            policies,
            db,
        }
    }
}

/// A code as sent: 422 `INVALID_CODE` unless it is a slug.
fn parse_code(field: &str, raw: &str) -> Result<Code, CatalogueFailure> {
    Code::parse(raw)
        .map_err(|e| CatalogueFailure::InvalidCode(format!("{field}: {e} (got {raw:?})")))
}

fn parse_codes(field: &str, raw: &[String]) -> Result<Vec<Code>, CatalogueFailure> {
    raw.iter().map(|code| parse_code(field, code)).collect()
}

/// A duration as sent: 422 `INVALID_DURATION` unless it is ISO 8601.
fn parse_duration(field: &str, raw: &str) -> Result<IsoDuration, CatalogueFailure> {
    IsoDuration::parse(raw)
        .map_err(|e| CatalogueFailure::InvalidDuration(format!("{field}: {e} (got {raw:?})")))
}

/// A present field, even `null`, is `Some`; an absent one stays `None` (via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
