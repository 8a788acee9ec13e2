//! The subscription list, from `rm_subscriptions`.

use chrono::{DateTime, NaiveTime, Utc};
use flowlytix_aggregates::values::{EARLIEST_DAY, LATEST_DAY};
use flowlytix_aggregates::{Plan, PolicyBook};
use flowlytix_projections::{with_db, Db};
use serde::Deserialize;
use sqlx::QueryBuilder;
use utoipa::{IntoParams, ToSchema};

use super::{like_pattern, Paging};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionFilter {
    /// The status in force now.
    #[param(inline)]
    pub status: Option<StatusFilter>,
    /// A plan slug (a-z, 0-9, `-`, `_`; 1 to 64).
    #[serde(default, deserialize_with = "plan_slug")]
    #[param(value_type = Option<String>, pattern = r"^[a-z0-9_-]{1,64}$")]
    pub plan: Option<String>,
    /// Only subscriptions following a policy of this product (a product code).
    #[serde(default, deserialize_with = "plan_slug")]
    #[param(value_type = Option<String>, pattern = r"^[a-z0-9_-]{1,64}$")]
    pub product: Option<String>,
    /// Only subscriptions following this policy: its id, its code, or
    /// `<product code>/<policy code>`.
    #[serde(default, deserialize_with = "policy_name")]
    #[param(value_type = Option<String>, min_length = 1, max_length = 129)]
    pub policy: Option<String>,
    /// Matches email, name or organization (case-insensitive substring).
    pub q: Option<String>,
    /// Only subscriptions whose period ends before this instant (instants outside
    /// 1970–9999 count as the nearest end of that range).
    pub expiring_before: Option<DateTime<Utc>>,
    /// created_at, updated_at, expires_at, customer_email or plan; prefix `-` for descending.
    /// Default `-created_at`.
    pub sort: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Wait until the read models include the event at this position.
    pub min_position: Option<i64>,
}

/// A status to filter by: one of those a subscription can be in now.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Trialing,
    Active,
    PastDue,
    Suspended,
    Canceled,
    Expired,
}

impl StatusFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Suspended => "suspended",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }
}

/// A plan filter must be a plan slug: anything else could never match.
fn plan_slug<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    match raw {
        Some(raw) => Plan::parse(&raw)
            .map(|plan| Some(plan.as_str().to_owned()))
            .map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// A policy filter is at most a `<product code>/<policy code>` long: anything longer could
/// never match.
fn policy_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    match raw {
        Some(raw) if raw.is_empty() || raw.chars().count() > 129 => Err(serde::de::Error::custom(
            "policy: a policy id, code or <product code>/<policy code> (1 to 129 characters)",
        )),
        other => Ok(other),
    }
}

/// `instant` moved into the supported range (the stores hold nothing outside it).
fn clamp_instant(instant: DateTime<Utc>) -> DateTime<Utc> {
    let earliest = EARLIEST_DAY.and_time(NaiveTime::MIN).and_utc();
    let latest = LATEST_DAY
        .and_hms_micro_opt(23, 59, 59, 999_999)
        .map_or(earliest, |t| t.and_utc());
    instant.clamp(earliest, latest)
}

pub use flowlytix_projections::subscriptions::SubscriptionRecord;
use flowlytix_projections::subscriptions::SUBSCRIPTION_COLUMNS_AFTER_STATUS;

const SORTS: [&str; 5] = [
    "created_at",
    "updated_at",
    "expires_at",
    "customer_email",
    "plan",
];

/// The sort column and direction, from a whitelist (the text reaches SQL).
fn order_by(sort: Option<&str>) -> Option<String> {
    let sort = sort.unwrap_or("-created_at");
    let (column, direction) = match sort.strip_prefix('-') {
        Some(column) => (column, "desc"),
        None => (sort, "asc"),
    };
    SORTS
        .contains(&column)
        .then(|| format!("{column} {direction} nulls last, id {direction}"))
}

pub fn valid_sort(sort: Option<&str>) -> bool {
    order_by(sort).is_some()
}

/// Appends the WHERE clause for `$filter` to `$query` (a macro so that it serves the query
/// builders of both backends).
macro_rules! push_filters {
    ($query:expr, $filter:expr, $policies:expr, $now:expr) => {{
        let filter: &SubscriptionFilter = $filter;
        $query.push(" where deleted_at is null");
        if let Some(ids) = $policies {
            let ids: &Vec<uuid::Uuid> = ids;
            if ids.is_empty() {
                $query.push(" and false");
            } else {
                $query.push(" and policy_id in (");
                let mut list = $query.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                $query.push(")");
            }
        }
        if let Some(status) = &filter.status {
            $query.push(" and ");
            crate::push_effective_status!($query, $now);
            $query.push(" = ").push_bind(status.as_str());
        }
        if let Some(plan) = &filter.plan {
            $query.push(" and plan = ").push_bind(plan.clone());
        }
        if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
            let pattern = like_pattern(q);
            $query
                .push(" and (lower(customer_email) like ")
                .push_bind(pattern.clone())
                .push(" escape '\\' or lower(customer_name) like ")
                .push_bind(pattern.clone())
                .push(" escape '\\' or lower(organization) like ")
                .push_bind(pattern)
                .push(" escape '\\')");
        }
        if let Some(before) = filter.expiring_before {
            $query
                .push(" and expires_at < ")
                .push_bind(clamp_instant(before));
        }
    }};
}

/// The policies the `product` and `policy` filters select (`None`: no such filter). Policies
/// are all in memory, so the list filters by their ids rather than joining.
fn selected_policies(
    filter: &SubscriptionFilter,
    policies: &PolicyBook,
) -> Option<Vec<uuid::Uuid>> {
    if filter.product.is_none() && filter.policy.is_none() {
        return None;
    }
    let wanted = filter.policy.as_deref();
    Some(
        policies
            .iter()
            .filter(|terms| {
                filter
                    .product
                    .as_ref()
                    .is_none_or(|product| terms.product_code.as_str() == product)
            })
            .filter(|terms| {
                wanted.is_none_or(|wanted| {
                    let id = terms.policy_id.to_string();
                    let qualified = format!("{}/{}", terms.product_code, terms.code);
                    wanted == id || wanted == qualified || wanted == terms.code.as_str()
                })
            })
            .map(|terms| terms.policy_id.as_uuid())
            .collect(),
    )
}

pub async fn list(
    db: &Db,
    filter: &SubscriptionFilter,
    policies: &PolicyBook,
) -> Result<(Vec<SubscriptionRecord>, i64), sqlx::Error> {
    let selected = selected_policies(filter, policies);
    let paging = Paging {
        page: filter.page,
        per_page: filter.per_page,
    };
    let now = Utc::now();
    let order =
        order_by(filter.sort.as_deref()).unwrap_or_else(|| "created_at desc, id desc".into());
    with_db!(db, pool => {
        let mut count = QueryBuilder::new("select count(*) from rm_subscriptions");
        push_filters!(count, filter, selected.as_ref(), now);
        let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
        let mut select = QueryBuilder::new(
            "select id, customer_email, customer_name, organization, plan, ",
        );
        crate::push_effective_status!(select, now);
        select.push(format!(" as status, {SUBSCRIPTION_COLUMNS_AFTER_STATUS} from rm_subscriptions"));
        push_filters!(select, filter, selected.as_ref(), now);
        select.push(format!(" order by {order}"));
        select.push(" limit ").push_bind(i64::from(paging.per_page()));
        select.push(" offset ").push_bind(paging.offset());
        let rows = select.build_query_as().fetch_all(pool).await?;
        Ok((rows, total))
    })
}
