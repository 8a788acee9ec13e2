//! `/admin/subscriptions`: the list (search, filters, sort, paging; its CSV export is in
//! `export`, the new-subscription form in `new_subscription`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::{Plan, PolicyBook};
use serde::Deserialize;

use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::Reader;
use crate::app::SharedApp;
use crate::http::views::SubscriptionView;
use crate::read;
use crate::read::consistency::wait_for_position;
use crate::read::subscriptions::{StatusFilter, SubscriptionFilter, SubscriptionRecord};

const PER_PAGE: u32 = 25;

pub const STATUSES: [&str; 6] = [
    "trialing",
    "active",
    "past_due",
    "suspended",
    "canceled",
    "expired",
];

const SORTS: [(&str, &str); 6] = [
    ("-created_at", "Newest first"),
    ("created_at", "Oldest first"),
    ("expires_at", "Expiring first"),
    ("customer_email", "Customer email"),
    ("plan", "Plan"),
    ("-updated_at", "Recently changed"),
];

/// The list's query string, as text: a value that is not a filter is ignored, not a 400.
#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub plan: String,
    /// A product code: subscriptions following its policies.
    #[serde(default)]
    pub product: String,
    /// `<product code>/<policy code>`.
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub sort: String,
    pub page: Option<u32>,
    /// After the admin's own write: wait until the list shows it.
    pub min_position: Option<i64>,
}

impl ListQuery {
    pub fn filter(&self, page: u32, per_page: u32) -> SubscriptionFilter {
        let status: Option<StatusFilter> =
            serde_json::from_value(serde_json::Value::String(self.status.clone())).ok();
        SubscriptionFilter {
            status,
            plan: Plan::parse(self.plan.trim())
                .ok()
                .map(|p| p.as_str().to_owned()),
            product: Plan::parse(self.product.trim())
                .ok()
                .map(|p| p.as_str().to_owned()),
            policy: forms::optional(&self.policy),
            q: forms::optional(&self.q),
            expiring_before: None,
            sort: SORTS
                .iter()
                .any(|(s, _)| *s == self.sort)
                .then(|| self.sort.clone()),
            page: Some(page),
            per_page: Some(per_page),
            min_position: None,
        }
    }

    /// This query at another page, as a URL query string.
    fn at_page(&self, page: u32) -> String {
        let pairs = [
            ("q", self.q.clone()),
            ("status", self.status.clone()),
            ("plan", self.plan.clone()),
            ("product", self.product.clone()),
            ("policy", self.policy.clone()),
            ("sort", self.sort.clone()),
            ("page", page.to_string()),
        ];
        let present: Vec<&(&str, String)> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
        serde_urlencoded::to_string(present).unwrap_or_default()
    }
}

pub struct Row {
    pub id: String,
    pub customer_email: String,
    pub customer_name: String,
    pub organization: String,
    pub plan: String,
    pub status: String,
    /// Expired, but still valid within its policy's grace.
    pub in_grace: bool,
    pub devices: String,
    pub expires_at: String,
    pub created_at: String,
}

impl Row {
    /// A list row under the policies' current terms (its plan and device limit those in
    /// force).
    pub fn new(row: &SubscriptionRecord, policies: &PolicyBook, now: DateTime<Utc>) -> Self {
        let view = SubscriptionView::from_record(row.clone(), policies, now);
        Self {
            id: view.id.to_string(),
            customer_email: view.customer_email,
            customer_name: view.customer_name,
            organization: view.organization.unwrap_or_default(),
            plan: view.plan,
            status: view.status,
            in_grace: view.in_grace,
            devices: format!("{} / {}", view.active_devices, view.max_devices),
            expires_at: view
                .expires_at
                .map_or("never".into(), |t| t.format("%Y-%m-%d").to_string()),
            created_at: view.created_at.format("%Y-%m-%d").to_string(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/subscriptions.html")]
pub struct ListPage {
    layout: Layout,
    query: ListQuery,
    statuses: [&'static str; 6],
    plans: Vec<String>,
    /// The product codes and `<product>/<policy>` codes to filter by.
    products: Vec<String>,
    policies: Vec<String>,
    sorts: [(&'static str, &'static str); 6],
    rows: Vec<Row>,
    total: i64,
    first: i64,
    last: i64,
    previous: Option<String>,
    next: Option<String>,
    export: String,
    /// False when the read model had not caught up with the admin's write in time.
    consistent: bool,
}

pub async fn list(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<ListPage, PanelError> {
    let consistent = wait_for_position(&app.db, "subscriptions", query.min_position).await?;
    let page = query.page.unwrap_or(1).max(1);
    let book = app.policies.book();
    let (rows, total) =
        read::subscriptions::list(&app.db, &query.filter(page, PER_PAGE), &book).await?;
    let mut policies: Vec<String> = book
        .iter()
        .map(|terms| format!("{}/{}", terms.product_code, terms.code))
        .collect();
    policies.sort();
    let mut products: Vec<String> = book
        .iter()
        .map(|terms| terms.product_code.to_string())
        .collect();
    products.sort();
    products.dedup();
    let now = Utc::now();
    let plans = read::analytics::subscriptions_by_plan(&app.db)
        .await?
        .into_keys()
        .collect();
    let first = i64::from(page - 1) * i64::from(PER_PAGE);
    Ok(ListPage {
        layout: Layout::signed_in(&app, &session, "subscriptions").await,
        statuses: STATUSES,
        plans,
        products,
        policies,
        sorts: SORTS,
        rows: rows.iter().map(|row| Row::new(row, &book, now)).collect(),
        total,
        first: if rows.is_empty() { first } else { first + 1 },
        last: first + rows.len() as i64,
        previous: (page > 1).then(|| query.at_page(page - 1)),
        next: (first + (rows.len() as i64) < total).then(|| query.at_page(page + 1)),
        export: query.at_page(1),
        query,
        consistent,
    })
}
