//! `/admin/webhooks`: the list of endpoints, and the new-endpoint form whose answer shows
//! the signing secret once. The detail page and its actions are in `webhook_detail`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flowlytix_aggregates::webhook_endpoint::DisableReason;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::{Reader, WriteForm, Writer};
use crate::app::SharedApp;
use crate::http::extract::RequestContext;
use crate::read::consistency::wait_for_position;
use crate::read::webhooks::EndpointRow;
use crate::read::{self, Paging};
use crate::webhooks::{CreateWebhookRequest, WithSecret};

/// Every endpoint on one page: a server has a handful, not thousands.
const PER_PAGE: u32 = 200;

/// How an endpoint's switch reads: `enabled`, or `disabled` with why.
pub fn switch(enabled: bool, reason: Option<&str>) -> String {
    match (enabled, reason) {
        (true, _) => "enabled".into(),
        (false, Some("failing")) => "disabled (kept failing)".into(),
        (false, Some("admin")) => "disabled by an admin".into(),
        (false, _) => "disabled".into(),
    }
}

pub fn reason_word(reason: Option<DisableReason>) -> Option<&'static str> {
    reason.map(|r| match r {
        DisableReason::Admin => "admin",
        DisableReason::Failing => "failing",
    })
}

/// Event types as shown: a comma-separated list, or "all".
pub fn types_shown(types: Option<&[String]>) -> String {
    match types {
        Some(types) if !types.is_empty() => types.join(", "),
        _ => "all".into(),
    }
}

pub struct Row {
    pub id: String,
    pub url: String,
    pub event_types: String,
    pub enabled: bool,
    pub switch: String,
    pub description: String,
}

impl From<&EndpointRow> for Row {
    fn from(row: &EndpointRow) -> Self {
        let types: Option<Vec<String>> = row
            .event_types
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        Self {
            id: row.id.to_string(),
            url: row.url.clone(),
            event_types: types_shown(types.as_deref()),
            enabled: row.enabled,
            switch: switch(row.enabled, row.disabled_reason.as_deref()),
            description: row.description.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/webhooks.html")]
pub struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    total: i64,
    consistent: bool,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    /// After the admin's own write: wait until the list shows it.
    pub min_position: Option<i64>,
}

pub async fn list(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<ListPage, PanelError> {
    let consistent = wait_for_position(&app.db, "webhooks", query.min_position).await?;
    let paging = Paging {
        page: Some(1),
        per_page: Some(PER_PAGE),
    };
    let (rows, total) = read::webhooks::list_endpoints(&app.db, &paging).await?;
    Ok(ListPage {
        layout: Layout::signed_in(&app, &session, "webhooks").await,
        rows: rows.iter().map(Row::from).collect(),
        total,
        consistent,
    })
}

/// The new-endpoint form as typed.
#[derive(Deserialize, Default)]
pub struct NewWebhookForm {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub event_types: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/new_webhook.html")]
pub struct NewPage {
    layout: Layout,
    form: NewWebhookForm,
    error: Option<String>,
}

/// The signing secret, shown once: after creation and after each rotation.
#[derive(Template, WebTemplate)]
#[template(path = "panel/webhook_secret.html")]
pub struct SecretPage {
    pub layout: Layout,
    pub heading: &'static str,
    pub id: String,
    pub url: String,
    pub secret: String,
    /// The write's position, so that the list linked from here already shows it.
    pub position: i64,
}

impl SecretPage {
    pub fn new(layout: Layout, heading: &'static str, made: &WithSecret) -> Self {
        let state = made.committed.aggregate.state();
        Self {
            layout,
            heading,
            id: state
                .map(|s| s.id.as_uuid().to_string())
                .unwrap_or_default(),
            url: state.map(|s| s.settings.url.clone()).unwrap_or_default(),
            secret: made.secret.expose_secret().to_owned(),
            position: made.committed.position,
        }
    }
}

pub async fn new_form(
    State(app): State<SharedApp>,
    Writer(session): Writer,
) -> Result<NewPage, PanelError> {
    Ok(NewPage {
        layout: Layout::signed_in(&app, &session, "webhooks").await,
        form: NewWebhookForm::default(),
        error: None,
    })
}

/// Empty: every event type (what the API's null means).
pub fn event_types(text: &str) -> Option<Vec<String>> {
    let types = forms::list(text);
    (!types.is_empty()).then_some(types)
}

pub async fn create(
    State(app): State<SharedApp>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<NewWebhookForm>,
) -> Result<Response, PanelError> {
    let layout = Layout::signed_in(&app, &session, "webhooks").await;
    let request = CreateWebhookRequest {
        url: fields.url.trim().to_owned(),
        event_types: event_types(&fields.event_types),
        description: forms::optional(&fields.description),
        enabled: None,
    };
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app.webhooks.create(request, metadata).await {
        Ok(made) => {
            let page = SecretPage::new(layout, "Webhook created", &made);
            Ok((StatusCode::CREATED, page).into_response())
        }
        Err(error) => {
            let error = PanelError::from(error);
            let (status, message) = error.message();
            if status.is_server_error() {
                return Err(error);
            }
            let page = NewPage {
                layout,
                form: fields,
                error: Some(message),
            };
            Ok((status, page).into_response())
        }
    }
}
