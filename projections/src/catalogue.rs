//! `rm_products`, `rm_entitlements` and `rm_policies`: the catalogue as its lists show it.
//! Each catalogue event carries the item's description after it, so the projector copies;
//! it decides nothing.
//!
//! Rows are folded in memory ([`CatalogueModel::apply`]) and written once per batch with
//! multi-row upserts, like the subscriptions' (a live batch loads the rows it touches
//! first; a replay folds the whole log from nothing).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use flowlytix_aggregates::{
    Entitlement, EntitlementEvent, Policy, PolicyEvent, PolicySettings, Product, ProductEvent,
};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder};
use uuid::Uuid;

use crate::projector::{ApplyFuture, Due, ProjectionError, Projector};
use flowlytix_eventstore::{with_conn, Conn, EventRecord};

pub struct CatalogueProjector;

impl Projector for CatalogueProjector {
    fn name(&self) -> &'static str {
        "catalogue"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_products", "rm_entitlements", "rm_policies"]
    }

    fn apply_batch<'a>(&'a self, mut db: Conn<'a>, events: &'a [Due<'a>]) -> ApplyFuture<'a> {
        Box::pin(async move {
            let mut decoded = Vec::new();
            for due in events {
                if let Some(event) = CatalogueEvent::decode(due.record)? {
                    if let Ok(id) = Uuid::parse_str(&due.record.aggregate_id) {
                        decoded.push((id, due.record.sequence, event));
                    }
                }
            }
            if decoded.is_empty() {
                return Ok(());
            }
            let mut model = CatalogueModel::load_for(db.reborrow(), &decoded).await?;
            for (id, version, event) in decoded {
                model.apply(id, version, event);
            }
            model.save(db).await?;
            Ok(())
        })
    }
}

/// An event of one of the catalogue's aggregates.
#[derive(Debug, Clone)]
pub enum CatalogueEvent {
    Product(ProductEvent),
    Entitlement(EntitlementEvent),
    /// Boxed: a policy's settings make its events several times larger than the others.
    Policy(Box<PolicyEvent>),
}

impl CatalogueEvent {
    /// The typed event of a record, if it is a catalogue aggregate's.
    pub fn decode(record: &EventRecord) -> Result<Option<Self>, ProjectionError> {
        let bad = |e| ProjectionError::BadPayload(record.message_id(), e);
        Ok(Some(match record.aggregate_type.as_str() {
            Product::TYPE => Self::Product(record.decode_as().map_err(bad)?),
            Entitlement::TYPE => Self::Entitlement(record.decode_as().map_err(bad)?),
            Policy::TYPE => Self::Policy(Box::new(record.decode_as().map_err(bad)?)),
            _ => return Ok(None),
        }))
    }

    /// The typed event of a stored payload (a replay's fold), if `aggregate_type` is a
    /// catalogue aggregate's.
    pub fn parse(aggregate_type: &str, payload: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(match aggregate_type {
            Product::TYPE => serde_json::from_str(payload).map(Self::Product),
            Entitlement::TYPE => serde_json::from_str(payload).map(Self::Entitlement),
            Policy::TYPE => serde_json::from_str(payload).map(|e| Self::Policy(Box::new(e))),
            _ => return None,
        })
    }

    fn is_creation(&self) -> bool {
        matches!(
            self,
            Self::Product(ProductEvent::ProductCreated { .. })
                | Self::Entitlement(EntitlementEvent::EntitlementCreated { .. })
        ) || matches!(self, Self::Policy(event) if matches!(**event, PolicyEvent::PolicyCreated { .. }))
    }
}

/// A row of `rm_products`.
#[derive(Debug, Clone, FromRow)]
pub struct ProductRecord {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub url: Option<String>,
    pub metadata: Json<Map<String, Value>>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

pub const PRODUCT_COLUMNS: &str =
    "id, code, name, url, metadata, deleted, created_at, updated_at, version";

/// A row of `rm_entitlements`.
#[derive(Debug, Clone, FromRow)]
pub struct EntitlementRecord {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

pub const ENTITLEMENT_COLUMNS: &str = "id, code, name, deleted, created_at, updated_at, version";

/// A row of `rm_policies`: `name`, `max_devices` and `entitlements` repeat what `settings`
/// holds, for filters and joins.
#[derive(Debug, Clone, FromRow)]
pub struct PolicyRecord {
    pub id: Uuid,
    pub product_id: Uuid,
    pub product_code: String,
    pub code: String,
    pub name: String,
    pub max_devices: i32,
    pub entitlements: Json<Vec<String>>,
    pub settings: Json<PolicySettings>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

pub const POLICY_COLUMNS: &str = "id, product_id, product_code, code, name, max_devices, \
     entitlements, settings, archived, created_at, updated_at, version";

impl PolicyRecord {
    fn set_settings(&mut self, settings: PolicySettings) {
        self.name = settings.name.clone();
        self.max_devices = i32::try_from(settings.max_devices).unwrap_or(i32::MAX);
        self.entitlements = Json(codes(&settings));
        self.settings = Json(settings);
    }
}

fn codes(settings: &PolicySettings) -> Vec<String> {
    settings
        .entitlements
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}

/// Rows per multi-row statement: well under both backends' bound-parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

/// The catalogue rows a batch (or a replay) has touched, as they will be written.
#[derive(Debug, Default)]
pub struct CatalogueModel {
    products: HashMap<Uuid, ProductRecord>,
    entitlements: HashMap<Uuid, EntitlementRecord>,
    policies: HashMap<Uuid, PolicyRecord>,
}

impl CatalogueModel {
    /// The existing rows that `events` touch.
    async fn load_for(
        db: Conn<'_>,
        events: &[(Uuid, i64, CatalogueEvent)],
    ) -> Result<Self, sqlx::Error> {
        let mut wanted: [BTreeSet<Uuid>; 3] = Default::default();
        for (id, _, event) in events.iter().filter(|(_, _, e)| !e.is_creation()) {
            let slot = match event {
                CatalogueEvent::Product(_) => 0,
                CatalogueEvent::Entitlement(_) => 1,
                CatalogueEvent::Policy(_) => 2,
            };
            wanted[slot].insert(*id);
        }
        let mut model = Self::default();
        with_conn!(db, c => {
            if !wanted[0].is_empty() {
                let mut query = QueryBuilder::new(format!("select {PRODUCT_COLUMNS} from rm_products where id in ("));
                let mut list = query.separated(", ");
                for id in &wanted[0] {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows: Vec<ProductRecord> = query.build_query_as().fetch_all(&mut *c).await?;
                model.products.extend(rows.into_iter().map(|r| (r.id, r)));
            }
            if !wanted[1].is_empty() {
                let mut query = QueryBuilder::new(format!("select {ENTITLEMENT_COLUMNS} from rm_entitlements where id in ("));
                let mut list = query.separated(", ");
                for id in &wanted[1] {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows: Vec<EntitlementRecord> = query.build_query_as().fetch_all(&mut *c).await?;
                model.entitlements.extend(rows.into_iter().map(|r| (r.id, r)));
            }
            if !wanted[2].is_empty() {
                let mut query = QueryBuilder::new(format!("select {POLICY_COLUMNS} from rm_policies where id in ("));
                let mut list = query.separated(", ");
                for id in &wanted[2] {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows: Vec<PolicyRecord> = query.build_query_as().fetch_all(&mut *c).await?;
                model.policies.extend(rows.into_iter().map(|r| (r.id, r)));
            }
        });
        Ok(model)
    }

    pub fn len(&self) -> usize {
        self.products.len() + self.entitlements.len() + self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds one event of the aggregate `id` (its `version`-th). An event for a row that
    /// does not exist changes nothing, as an update of a missing row would not.
    pub fn apply(&mut self, id: Uuid, version: i64, event: CatalogueEvent) {
        match event {
            CatalogueEvent::Product(event) => self.apply_product(id, version, event),
            CatalogueEvent::Entitlement(event) => self.apply_entitlement(id, version, event),
            CatalogueEvent::Policy(event) => self.apply_policy(id, version, *event),
        }
    }

    fn apply_product(&mut self, id: Uuid, version: i64, event: ProductEvent) {
        let at = event.at();
        if let ProductEvent::ProductCreated {
            code,
            name,
            url,
            metadata,
            ..
        } = event
        {
            // Also a re-creation after a deletion: the row starts over.
            self.products.insert(
                id,
                ProductRecord {
                    id,
                    code: code.into(),
                    name,
                    url,
                    metadata: Json(metadata),
                    deleted: false,
                    created_at: at,
                    updated_at: at,
                    version,
                },
            );
            return;
        }
        let Some(row) = self.products.get_mut(&id) else {
            return;
        };
        row.updated_at = at;
        row.version = version;
        match event {
            ProductEvent::ProductCreated { .. } => {}
            ProductEvent::ProductUpdated {
                name,
                url,
                metadata,
                ..
            } => {
                row.name = name;
                row.url = url;
                row.metadata = Json(metadata);
            }
            ProductEvent::ProductDeleted { .. } => row.deleted = true,
        }
    }

    fn apply_entitlement(&mut self, id: Uuid, version: i64, event: EntitlementEvent) {
        let at = event.at();
        if let EntitlementEvent::EntitlementCreated { code, name, .. } = event {
            self.entitlements.insert(
                id,
                EntitlementRecord {
                    id,
                    code: code.into(),
                    name,
                    deleted: false,
                    created_at: at,
                    updated_at: at,
                    version,
                },
            );
            return;
        }
        let Some(row) = self.entitlements.get_mut(&id) else {
            return;
        };
        row.updated_at = at;
        row.version = version;
        match event {
            EntitlementEvent::EntitlementCreated { .. } => {}
            EntitlementEvent::EntitlementRenamed { name, .. } => row.name = name,
            EntitlementEvent::EntitlementDeleted { .. } => row.deleted = true,
        }
    }

    fn apply_policy(&mut self, id: Uuid, version: i64, event: PolicyEvent) {
        let at = event.at();
        if let PolicyEvent::PolicyCreated {
            product_id,
            product_code,
            code,
            settings,
            ..
        } = event
        {
            let mut row = PolicyRecord {
                id,
                product_id: product_id.as_uuid(),
                product_code: product_code.into(),
                code: code.into(),
                name: String::new(),
                max_devices: 0,
                entitlements: Json(vec![]),
                settings: Json(settings.clone()),
                archived: false,
                created_at: at,
                updated_at: at,
                version,
            };
            row.set_settings(settings);
            self.policies.insert(id, row);
            return;
        }
        let Some(row) = self.policies.get_mut(&id) else {
            return;
        };
        row.updated_at = at;
        row.version = version;
        match event {
            PolicyEvent::PolicyCreated { .. } => {}
            PolicyEvent::PolicyUpdated { settings, .. } => row.set_settings(settings),
            PolicyEvent::PolicyEntitlementsChanged { entitlements, .. } => {
                let mut settings = row.settings.0.clone();
                settings.entitlements = entitlements;
                row.set_settings(settings);
            }
            PolicyEvent::PolicyArchived { .. } => row.archived = true,
            PolicyEvent::PolicyUnarchived { .. } => row.archived = false,
        }
    }

    /// Writes every touched row (insert or replace).
    pub async fn save(self, mut db: Conn<'_>) -> Result<(), sqlx::Error> {
        let products: Vec<ProductRecord> = self.products.into_values().collect();
        let entitlements: Vec<EntitlementRecord> = self.entitlements.into_values().collect();
        let policies: Vec<PolicyRecord> = self.policies.into_values().collect();
        for chunk in products.chunks(ROWS_PER_STATEMENT) {
            with_conn!(db.reborrow(), c => {
                let mut query = QueryBuilder::new(format!("insert into rm_products ({PRODUCT_COLUMNS}) "));
                query.push_values(chunk, |mut row, r| {
                    row.push_bind(r.id)
                        .push_bind(&r.code)
                        .push_bind(&r.name)
                        .push_bind(&r.url)
                        .push_bind(&r.metadata)
                        .push_bind(r.deleted)
                        .push_bind(r.created_at)
                        .push_bind(r.updated_at)
                        .push_bind(r.version);
                });
                query.push(
                    " on conflict (id) do update set code = excluded.code, name = excluded.name,
                      url = excluded.url, metadata = excluded.metadata, deleted = excluded.deleted,
                      created_at = excluded.created_at, updated_at = excluded.updated_at,
                      version = excluded.version",
                );
                query.build().execute(&mut *c).await?;
            });
        }
        for chunk in entitlements.chunks(ROWS_PER_STATEMENT) {
            with_conn!(db.reborrow(), c => {
                let mut query = QueryBuilder::new(format!("insert into rm_entitlements ({ENTITLEMENT_COLUMNS}) "));
                query.push_values(chunk, |mut row, r| {
                    row.push_bind(r.id)
                        .push_bind(&r.code)
                        .push_bind(&r.name)
                        .push_bind(r.deleted)
                        .push_bind(r.created_at)
                        .push_bind(r.updated_at)
                        .push_bind(r.version);
                });
                query.push(
                    " on conflict (id) do update set code = excluded.code, name = excluded.name,
                      deleted = excluded.deleted, created_at = excluded.created_at,
                      updated_at = excluded.updated_at, version = excluded.version",
                );
                query.build().execute(&mut *c).await?;
            });
        }
        for chunk in policies.chunks(ROWS_PER_STATEMENT) {
            with_conn!(db.reborrow(), c => {
                let mut query = QueryBuilder::new(format!("insert into rm_policies ({POLICY_COLUMNS}) "));
                query.push_values(chunk, |mut row, r| {
                    row.push_bind(r.id)
                        .push_bind(r.product_id)
                        .push_bind(&r.product_code)
                        .push_bind(&r.code)
                        .push_bind(&r.name)
                        .push_bind(r.max_devices)
                        .push_bind(&r.entitlements)
                        .push_bind(&r.settings)
                        .push_bind(r.archived)
                        .push_bind(r.created_at)
                        .push_bind(r.updated_at)
                        .push_bind(r.version);
                });
                query.push(
                    " on conflict (id) do update set product_id = excluded.product_id,
                      product_code = excluded.product_code, code = excluded.code,
                      name = excluded.name, max_devices = excluded.max_devices,
                      entitlements = excluded.entitlements, settings = excluded.settings,
                      archived = excluded.archived, created_at = excluded.created_at,
                      updated_at = excluded.updated_at, version = excluded.version",
                );
                query.build().execute(&mut *c).await?;
            });
        }
        Ok(())
    }
}
