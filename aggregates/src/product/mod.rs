//! The `Product` aggregate: what a vendor sells (`code` unique, since the id derives from
//! it). Policies belong to a product; a product is deleted only while no policy names it,
//! which the application layer checks (a rule across aggregates, kept explicit there).

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalogue::{check_metadata, check_name, check_url, CatalogueError};
use crate::values::{Code, ProductId};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    state: Option<ProductState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductState {
    pub id: ProductId,
    pub code: Code,
    pub name: String,
    pub url: Option<String>,
    pub metadata: Map<String, Value>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductCommand {
    /// Also re-creates a deleted product under its code.
    Create {
        code: Code,
        name: String,
        url: Option<String>,
        metadata: Map<String, Value>,
        at: DateTime<Utc>,
    },
    /// `None` keeps a field; `url: Some(None)` clears it.
    Update {
        name: Option<String>,
        url: Option<Option<String>>,
        metadata: Option<Map<String, Value>>,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
}

/// Each event carries the product's whole description after it, so projectors copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductEvent {
    ProductCreated {
        product_id: ProductId,
        code: Code,
        name: String,
        url: Option<String>,
        metadata: Map<String, Value>,
        at: DateTime<Utc>,
    },
    ProductUpdated {
        name: String,
        url: Option<String>,
        metadata: Map<String, Value>,
        at: DateTime<Utc>,
    },
    ProductDeleted {
        at: DateTime<Utc>,
    },
}

impl ProductEvent {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::ProductCreated { at, .. }
            | Self::ProductUpdated { at, .. }
            | Self::ProductDeleted { at } => *at,
        }
    }
}

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProductCreated { .. } => "ProductCreated",
            Self::ProductUpdated { .. } => "ProductUpdated",
            Self::ProductDeleted { .. } => "ProductDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl Product {
    pub fn state(&self) -> Option<&ProductState> {
        self.state.as_ref()
    }

    /// The product unless it never existed or was deleted.
    pub fn live(&self) -> Option<&ProductState> {
        self.state.as_ref().filter(|s| !s.deleted)
    }

    pub fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, CatalogueError> {
        match command {
            ProductCommand::Create {
                code,
                name,
                url,
                metadata,
                at,
            } => {
                if self.live().is_some() {
                    return Err(CatalogueError::AlreadyExists);
                }
                check_name(&name)?;
                if let Some(url) = &url {
                    check_url(url)?;
                }
                check_metadata(&metadata)?;
                Ok(vec![ProductEvent::ProductCreated {
                    product_id: ProductId::for_code(&code),
                    code,
                    name,
                    url,
                    metadata,
                    at,
                }])
            }
            ProductCommand::Update {
                name,
                url,
                metadata,
                at,
            } => {
                let state = self.live_or_error()?;
                let name = name.unwrap_or_else(|| state.name.clone());
                let url = url.unwrap_or_else(|| state.url.clone());
                let metadata = metadata.unwrap_or_else(|| state.metadata.clone());
                check_name(&name)?;
                if let Some(url) = &url {
                    check_url(url)?;
                }
                check_metadata(&metadata)?;
                if name == state.name && url == state.url && metadata == state.metadata {
                    return Ok(vec![]);
                }
                Ok(vec![ProductEvent::ProductUpdated {
                    name,
                    url,
                    metadata,
                    at,
                }])
            }
            ProductCommand::Delete { at } => {
                self.live_or_error()?;
                Ok(vec![ProductEvent::ProductDeleted { at }])
            }
        }
    }

    fn live_or_error(&self) -> Result<&ProductState, CatalogueError> {
        match &self.state {
            None => Err(CatalogueError::NotFound),
            Some(state) if state.deleted => Err(CatalogueError::Deleted),
            Some(state) => Ok(state),
        }
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = "Product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = CatalogueError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ProductCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CatalogueError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ProductEvent) {
        match event {
            ProductEvent::ProductCreated {
                product_id,
                code,
                name,
                url,
                metadata,
                at,
            } => {
                self.state = Some(ProductState {
                    id: product_id,
                    code,
                    name,
                    url,
                    metadata,
                    deleted: false,
                    created_at: at,
                    updated_at: at,
                });
            }
            ProductEvent::ProductUpdated {
                name,
                url,
                metadata,
                at,
            } => {
                if let Some(state) = self.state.as_mut() {
                    state.name = name;
                    state.url = url;
                    state.metadata = metadata;
                    state.updated_at = at;
                }
            }
            ProductEvent::ProductDeleted { at } => {
                if let Some(state) = self.state.as_mut() {
                    state.deleted = true;
                    state.updated_at = at;
                }
            }
        }
    }
}
