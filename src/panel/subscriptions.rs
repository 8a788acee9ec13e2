//! `/admin/subscriptions`: the list (search, filters, sort, paging; its CSV export is in
//! `export`), and the new-subscription form whose answer shows the full license key once.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flowlytix_aggregates::{Plan, SubscriptionError, SubscriptionId};
use serde::Deserialize;
use uuid::Uuid;

use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::{Reader, WriteForm, Writer};
use crate::app::SharedApp;
use crate::http::extract::RequestContext;
use crate::read;
use crate::read::consistency::wait_for_position;
use crate::read::subscriptions::{StatusFilter, SubscriptionFilter, SubscriptionRecord};
use crate::store::ExecuteError;
use crate::subscriptions::{CreateSubscriptionRequest, ManageError};

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
            product: None,
            policy: None,
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
    pub devices: String,
    pub expires_at: String,
    pub created_at: String,
}

impl From<&SubscriptionRecord> for Row {
    fn from(row: &SubscriptionRecord) -> Self {
        Self {
            id: row.id.to_string(),
            customer_email: row.customer_email.clone(),
            customer_name: row.customer_name.clone(),
            organization: row.organization.clone().unwrap_or_default(),
            plan: row.plan.clone(),
            status: row.status.clone(),
            devices: format!("{} / {}", row.active_devices, row.max_devices),
            expires_at: row
                .expires_at
                .map_or("never".into(), |t| t.format("%Y-%m-%d").to_string()),
            created_at: row.created_at.format("%Y-%m-%d").to_string(),
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
    let (rows, total) =
        read::subscriptions::list(&app.db, &query.filter(page, PER_PAGE), &app.policies.book())
            .await?;
    let plans = read::analytics::subscriptions_by_plan(&app.db)
        .await?
        .into_keys()
        .collect();
    let first = i64::from(page - 1) * i64::from(PER_PAGE);
    Ok(ListPage {
        layout: Layout::signed_in(&app, &session, "subscriptions").await,
        statuses: STATUSES,
        plans,
        sorts: SORTS,
        rows: rows.iter().map(Row::from).collect(),
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

/// The new-subscription form as typed.
#[derive(Deserialize, Default)]
pub struct NewSubscriptionForm {
    /// Chosen when the form is shown: the same form sent twice (a reload of the answer)
    /// names the same subscription, which the event store refuses to create again.
    #[serde(default)]
    pub subscription_id: String,
    #[serde(default)]
    pub customer_email: String,
    #[serde(default)]
    pub customer_name: String,
    #[serde(default)]
    pub organization: String,
    #[serde(default)]
    pub plan: String,
    #[serde(default)]
    pub max_devices: String,
    #[serde(default)]
    pub expires_at: String,
    #[serde(default)]
    pub trial_ends_at: String,
    #[serde(default)]
    pub features: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/new_subscription.html")]
pub struct NewPage {
    layout: Layout,
    form: NewSubscriptionForm,
    error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/license_key.html")]
pub struct KeyPage {
    pub layout: Layout,
    pub heading: &'static str,
    pub subscription_id: String,
    pub customer: String,
    pub license_key: String,
    /// The write's position, so that the list linked from here already shows it.
    pub position: i64,
}

pub async fn new_form(
    State(app): State<SharedApp>,
    Writer(session): Writer,
) -> Result<NewPage, PanelError> {
    Ok(NewPage {
        layout: Layout::signed_in(&app, &session, "subscriptions").await,
        form: NewSubscriptionForm {
            subscription_id: Uuid::new_v4().to_string(),
            plan: "standard".into(),
            max_devices: "3".into(),
            ..NewSubscriptionForm::default()
        },
        error: None,
    })
}

fn create_request(form: &NewSubscriptionForm) -> Result<CreateSubscriptionRequest, String> {
    Ok(CreateSubscriptionRequest {
        customer_email: form.customer_email.trim().to_owned(),
        customer_name: form.customer_name.trim().to_owned(),
        organization: forms::optional(&form.organization),
        policy: None,
        plan: Some(form.plan.trim().to_owned()),
        max_devices: Some(forms::count("Max devices", &form.max_devices)?),
        starts_at: None,
        expires_at: forms::instant("Expires at", &form.expires_at)?,
        trial_ends_at: forms::instant("Trial ends at", &form.trial_ends_at)?,
        features: forms::list(&form.features),
        metadata: serde_json::Map::new(),
    })
}

pub async fn create(
    State(app): State<SharedApp>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<NewSubscriptionForm>,
) -> Result<Response, PanelError> {
    let layout = Layout::signed_in(&app, &session, "subscriptions").await;
    let refused = |layout, form, message: String, status| {
        let page = NewPage {
            layout,
            form,
            error: Some(message),
        };
        Ok((status, page).into_response())
    };
    let request = match create_request(&fields) {
        Ok(request) => request,
        Err(message) => return refused(layout, fields, message, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let metadata = context.metadata(session.admin.admin_id.to_string());
    let id = Uuid::parse_str(fields.subscription_id.trim()).unwrap_or_else(|_| Uuid::new_v4());
    match app
        .subscriptions
        .create_with_id(SubscriptionId(id), request, metadata)
        .await
    {
        Ok(created) => {
            let state = created.committed.aggregate.state();
            let page = KeyPage {
                layout,
                heading: "Subscription created",
                subscription_id: state.map(|s| s.id.to_string()).unwrap_or_default(),
                customer: fields.customer_email.clone(),
                license_key: created.license_key.expose().to_owned(),
                position: created.committed.position,
            };
            Ok((StatusCode::CREATED, page).into_response())
        }
        Err(ManageError::Command(ExecuteError::Domain(SubscriptionError::AlreadyExists))) => {
            let message = "This form was already sent and its subscription created; its \
                 license key was shown then and is not shown again. Find it in the list."
                .to_owned();
            refused(layout, fields, message, StatusCode::CONFLICT)
        }
        Err(error) => {
            let error = PanelError::from(error);
            let (status, message) = error.message();
            if status.is_server_error() {
                return Err(error);
            }
            refused(layout, fields, message, status)
        }
    }
}
