//! The catalogue as listed (`rm_products`, `rm_entitlements`, `rm_policies`), and the
//! question the entitlement deletion asks of the subscriptions' read model.

use flowlytix_projections::catalogue::{
    EntitlementRecord, PolicyRecord, ProductRecord, ENTITLEMENT_COLUMNS, POLICY_COLUMNS,
    PRODUCT_COLUMNS,
};
use flowlytix_projections::{with_db, Db};
use serde::Deserialize;
use sqlx::QueryBuilder;
use utoipa::IntoParams;
use uuid::Uuid;

use super::Paging;

/// Paging, and read-your-writes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CatalogueQuery {
    /// From 1.
    pub page: Option<u32>,
    /// 1 to 200; default 20.
    pub per_page: Option<u32>,
    /// The `position` of a command response: waits (up to 5 s) until the list includes it.
    pub min_position: Option<i64>,
}

impl CatalogueQuery {
    pub fn paging(&self) -> Paging {
        Paging {
            page: self.page,
            per_page: self.per_page,
        }
    }
}

/// Filters, paging, and read-your-writes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// Only this product's policies.
    pub product_id: Option<Uuid>,
    /// Only archived (`true`) or only active (`false`) policies; both when absent.
    pub archived: Option<bool>,
    /// From 1.
    pub page: Option<u32>,
    /// 1 to 200; default 20.
    pub per_page: Option<u32>,
    /// The `position` of a command response: waits (up to 5 s) until the list includes it.
    pub min_position: Option<i64>,
}

impl PolicyQuery {
    pub fn paging(&self) -> Paging {
        Paging {
            page: self.page,
            per_page: self.per_page,
        }
    }
}

/// Live products by code, and how many there are.
pub async fn products(db: &Db, paging: &Paging) -> Result<(Vec<ProductRecord>, i64), sqlx::Error> {
    with_db!(db, pool => {
        let total: i64 = sqlx::query_scalar("select count(*) from rm_products where not deleted")
            .fetch_one(pool)
            .await?;
        let rows = sqlx::query_as(&format!(
            "select {PRODUCT_COLUMNS} from rm_products where not deleted
             order by code limit $1 offset $2"
        ))
        .bind(i64::from(paging.per_page()))
        .bind(paging.offset())
        .fetch_all(pool)
        .await?;
        Ok((rows, total))
    })
}

/// Live entitlements by code, and how many there are.
pub async fn entitlements(
    db: &Db,
    paging: &Paging,
) -> Result<(Vec<EntitlementRecord>, i64), sqlx::Error> {
    with_db!(db, pool => {
        let total: i64 = sqlx::query_scalar("select count(*) from rm_entitlements where not deleted")
            .fetch_one(pool)
            .await?;
        let rows = sqlx::query_as(&format!(
            "select {ENTITLEMENT_COLUMNS} from rm_entitlements where not deleted
             order by code limit $1 offset $2"
        ))
        .bind(i64::from(paging.per_page()))
        .bind(paging.offset())
        .fetch_all(pool)
        .await?;
        Ok((rows, total))
    })
}

/// Policies by product code and code, filtered, and how many match.
pub async fn policies(
    db: &Db,
    query: &PolicyQuery,
) -> Result<(Vec<PolicyRecord>, i64), sqlx::Error> {
    let paging = query.paging();
    with_db!(db, pool => {
        let filtered = |builder: &mut QueryBuilder<'_, _>| {
            builder.push(" where 1 = 1");
            if let Some(product_id) = query.product_id {
                builder.push(" and product_id = ").push_bind(product_id);
            }
            if let Some(archived) = query.archived {
                builder.push(" and archived = ").push_bind(archived);
            }
        };
        let mut count = QueryBuilder::new("select count(*) from rm_policies");
        filtered(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
        let mut select = QueryBuilder::new(format!("select {POLICY_COLUMNS} from rm_policies"));
        filtered(&mut select);
        select
            .push(" order by product_code, code limit ")
            .push_bind(i64::from(paging.per_page()))
            .push(" offset ")
            .push_bind(paging.offset());
        let rows = select.build_query_as().fetch_all(pool).await?;
        Ok((rows, total))
    })
}

/// How many live (not deleted) subscriptions list `code` among their features.
pub async fn live_subscriptions_naming(db: &Db, code: &str) -> Result<i64, sqlx::Error> {
    let sql = db.dialect().pick(
        "select count(*) from rm_subscriptions
         where deleted_at is null and features @> jsonb_build_array($1::text)",
        "select count(*) from rm_subscriptions
         where deleted_at is null
           and exists (select 1 from json_each(rm_subscriptions.features) where value = $1)",
    );
    with_db!(db, pool => {
        sqlx::query_scalar(sql).bind(code).fetch_one(pool).await
    })
}
