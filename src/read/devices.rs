//! The device list, from `rm_devices`.

use flowlytix_projections::{with_db, Db};
use serde::Deserialize;
use sqlx::QueryBuilder;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{like_pattern, Paging};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeviceFilter {
    pub subscription_id: Option<Uuid>,
    #[param(inline)]
    pub status: Option<DeviceStatusFilter>,
    pub platform: Option<String>,
    /// Matches name, hostname or app version (case-insensitive substring).
    pub q: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Wait until the read models include the event at this position.
    pub min_position: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatusFilter {
    Active,
    Inactive,
}

impl DeviceStatusFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

pub use flowlytix_projections::subscriptions::DeviceRecord;
use flowlytix_projections::subscriptions::DEVICE_COLUMNS;

/// Appends the WHERE clause for `$filter` (a macro so that it serves both backends).
macro_rules! push_filters {
    ($query:expr, $filter:expr) => {{
        let filter: &DeviceFilter = $filter;
        $query.push(" where not subscription_deleted");
        if let Some(id) = filter.subscription_id {
            $query.push(" and subscription_id = ").push_bind(id);
        }
        if let Some(status) = &filter.status {
            $query.push(" and status = ").push_bind(status.as_str());
        }
        if let Some(platform) = &filter.platform {
            $query.push(" and platform = ").push_bind(platform.clone());
        }
        if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
            let pattern = like_pattern(q);
            $query
                .push(" and (lower(name) like ")
                .push_bind(pattern.clone())
                .push(" escape '\\' or lower(hostname) like ")
                .push_bind(pattern.clone())
                .push(" escape '\\' or lower(app_version) like ")
                .push_bind(pattern)
                .push(" escape '\\')");
        }
    }};
}

pub async fn list(db: &Db, filter: &DeviceFilter) -> Result<(Vec<DeviceRecord>, i64), sqlx::Error> {
    let paging = Paging {
        page: filter.page,
        per_page: filter.per_page,
    };
    with_db!(db, pool => {
        let mut count = QueryBuilder::new("select count(*) from rm_devices");
        push_filters!(count, filter);
        let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
        let mut select = QueryBuilder::new(format!("select {DEVICE_COLUMNS} from rm_devices"));
        push_filters!(select, filter);
        select.push(" order by activated_at desc, id desc limit ").push_bind(i64::from(paging.per_page()));
        select.push(" offset ").push_bind(paging.offset());
        let rows = select.build_query_as().fetch_all(pool).await?;
        Ok((rows, total))
    })
}
