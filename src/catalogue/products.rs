//! What admins do to products: create, change, delete (while no policy names it), read.

use flowlytix_aggregates::{Product, ProductCommand, ProductId};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{parse_code, present, Catalogue, CatalogueFailure, Item};
use crate::store::{Committed, EventMetadata};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductRequest {
    pub name: String,
    /// A slug (`a-z`, `0-9`, `-`, `_`; 1 to 64), unique among live products, never changed.
    pub code: String,
    /// An `http(s)://` URL of at most 2048 characters.
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

/// Only the fields sent change; `url: null` clears the URL. The code never changes.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateProductRequest {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub url: Option<Option<String>>,
    pub metadata: Option<Map<String, Value>>,
}

impl Catalogue {
    pub async fn create_product(
        &self,
        request: CreateProductRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<Product>, CatalogueFailure> {
        let code = parse_code("code", &request.code)?;
        let id = ProductId::for_code(&code);
        let command = ProductCommand::Create {
            code,
            name: request.name,
            url: request.url,
            metadata: request.metadata.unwrap_or_default(),
            at: metadata.occurred_at,
        };
        self.run_product(id, command, metadata).await
    }

    pub async fn update_product(
        &self,
        id: ProductId,
        request: UpdateProductRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<Product>, CatalogueFailure> {
        let command = ProductCommand::Update {
            name: request.name,
            url: request.url,
            metadata: request.metadata,
            at: metadata.occurred_at,
        };
        self.run_product(id, command, metadata).await
    }

    /// Refused (409 `PRODUCT_IN_USE`) while any policy, archived or not, names the product.
    pub async fn delete_product(
        &self,
        id: ProductId,
        metadata: EventMetadata,
    ) -> Result<Committed<Product>, CatalogueFailure> {
        self.product(id).await?;
        let naming: Vec<String> = self
            .policies
            .book()
            .iter()
            .filter(|terms| terms.product_id == id)
            .map(|terms| terms.code.to_string())
            .collect();
        if !naming.is_empty() {
            return Err(CatalogueFailure::InUse {
                item: Item::Product,
                detail: format!(
                    "the product's policies name it: {}; policies are archived, never deleted",
                    naming.join(", ")
                ),
            });
        }
        let command = ProductCommand::Delete {
            at: metadata.occurred_at,
        };
        self.run_product(id, command, metadata).await
    }

    /// A live product as its events have it now, and its version.
    pub async fn product(&self, id: ProductId) -> Result<(Product, u64), CatalogueFailure> {
        let (product, version) = self
            .products
            .load(&id.to_string())
            .await
            .map_err(CatalogueFailure::command(Item::Product))?;
        if product.live().is_none() {
            return Err(CatalogueFailure::NotFound(Item::Product));
        }
        Ok((product, version))
    }

    async fn run_product(
        &self,
        id: ProductId,
        command: ProductCommand,
        metadata: EventMetadata,
    ) -> Result<Committed<Product>, CatalogueFailure> {
        self.products
            .execute(&id.to_string(), vec![command], metadata, None)
            .await
            .map_err(CatalogueFailure::command(Item::Product))
    }
}
