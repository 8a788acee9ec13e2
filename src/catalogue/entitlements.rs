//! What admins do to entitlements: create, rename, delete (while nothing names it), read.

use flowlytix_aggregates::{Code, Entitlement, EntitlementCommand, EntitlementId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{parse_code, Catalogue, CatalogueFailure, Item};
use crate::store::{Committed, EventMetadata};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEntitlementRequest {
    /// A slug (`a-z`, `0-9`, `-`, `_`; 1 to 64), unique among live entitlements, never
    /// changed: policies and subscriptions name the entitlement by it.
    pub code: String,
    pub name: String,
}

/// The name is all that changes; the code never does.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEntitlementRequest {
    pub name: String,
}

impl Catalogue {
    pub async fn create_entitlement(
        &self,
        request: CreateEntitlementRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<Entitlement>, CatalogueFailure> {
        let code = parse_code("code", &request.code)?;
        let id = EntitlementId::for_code(&code);
        let command = EntitlementCommand::Create {
            code,
            name: request.name,
            at: metadata.occurred_at,
        };
        self.run_entitlement(id, command, metadata).await
    }

    pub async fn update_entitlement(
        &self,
        id: EntitlementId,
        request: UpdateEntitlementRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<Entitlement>, CatalogueFailure> {
        let command = EntitlementCommand::Rename {
            name: request.name,
            at: metadata.occurred_at,
        };
        self.run_entitlement(id, command, metadata).await
    }

    /// Refused (409 `ENTITLEMENT_IN_USE`) while any policy or any live subscription names
    /// the entitlement's code. Policies are read from the book (current on every
    /// instance), subscriptions from their read model.
    pub async fn delete_entitlement(
        &self,
        id: EntitlementId,
        metadata: EventMetadata,
    ) -> Result<Committed<Entitlement>, CatalogueFailure> {
        let (entitlement, _) = self.entitlement(id).await?;
        let code = entitlement
            .live()
            .map(|state| state.code.clone())
            .ok_or(CatalogueFailure::NotFound(Item::Entitlement))?;
        self.refuse_if_named(&code).await?;
        let command = EntitlementCommand::Delete {
            at: metadata.occurred_at,
        };
        self.run_entitlement(id, command, metadata).await
    }

    async fn refuse_if_named(&self, code: &Code) -> Result<(), CatalogueFailure> {
        let policies: Vec<String> = self
            .policies
            .book()
            .iter()
            .filter(|terms| terms.settings.entitlements.contains(code))
            .map(|terms| format!("{}/{}", terms.product_code, terms.code))
            .collect();
        if !policies.is_empty() {
            return Err(CatalogueFailure::InUse {
                item: Item::Entitlement,
                detail: format!("policies name {code}: {}", policies.join(", ")),
            });
        }
        let subscriptions =
            crate::read::catalogue::live_subscriptions_naming(&self.db, code.as_str()).await?;
        if subscriptions > 0 {
            return Err(CatalogueFailure::InUse {
                item: Item::Entitlement,
                detail: format!("{subscriptions} live subscription(s) name {code}"),
            });
        }
        Ok(())
    }

    /// A live entitlement as its events have it now, and its version.
    pub async fn entitlement(
        &self,
        id: EntitlementId,
    ) -> Result<(Entitlement, u64), CatalogueFailure> {
        let (entitlement, version) = self
            .entitlements
            .load(&id.to_string())
            .await
            .map_err(CatalogueFailure::command(Item::Entitlement))?;
        if entitlement.live().is_none() {
            return Err(CatalogueFailure::NotFound(Item::Entitlement));
        }
        Ok((entitlement, version))
    }

    /// The codes among `codes` that name no live entitlement, in the order given.
    pub(super) async fn unknown_entitlements(
        &self,
        codes: &[Code],
    ) -> Result<Vec<String>, CatalogueFailure> {
        let mut unknown = Vec::new();
        for code in codes {
            match self.entitlement(EntitlementId::for_code(code)).await {
                Ok(_) => {}
                Err(CatalogueFailure::NotFound(_)) => unknown.push(code.to_string()),
                Err(other) => return Err(other),
            }
        }
        Ok(unknown)
    }

    async fn run_entitlement(
        &self,
        id: EntitlementId,
        command: EntitlementCommand,
        metadata: EventMetadata,
    ) -> Result<Committed<Entitlement>, CatalogueFailure> {
        self.entitlements
            .execute(&id.to_string(), vec![command], metadata, None)
            .await
            .map_err(CatalogueFailure::command(Item::Entitlement))
    }
}
