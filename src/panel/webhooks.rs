//! `/admin/webhooks`: the list of endpoints, and the new-endpoint form whose answer shows
//! the signing secret once. The detail page and its actions are in `webhook_detail`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flowlytix_aggregates::webhook_endpoint::{DisableReason, EVENT_TYPES};
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

/// The new-endpoint form as typed (the edit form too).
#[derive(Deserialize, Default)]
pub struct NewWebhookForm {
    #[serde(default)]
    pub url: String,
    /// The ticked boxes: the field repeats, once per box (each may also be a
    /// comma-separated list, as the form's earlier text field took).
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: String,
}

impl NewWebhookForm {
    /// The event types chosen: none is every event type (what the API's null means).
    pub fn chosen(&self) -> Option<Vec<String>> {
        let types: Vec<String> = self
            .event_types
            .iter()
            .flat_map(|t| forms::list(t))
            .collect();
        (!types.is_empty()).then_some(types)
    }

    /// Every known event type as a checkbox, grouped by aggregate, ticked as in this form.
    pub fn groups(&self) -> Vec<EventTypeGroup> {
        let chosen = self.chosen().unwrap_or_default();
        let mut groups: Vec<EventTypeGroup> = vec![];
        for name in EVENT_TYPES {
            let group = group_of(name);
            let choice = EventTypeChoice {
                name,
                checked: chosen.iter().any(|c| c == name),
            };
            match groups.iter_mut().find(|g| g.name == group) {
                Some(existing) => existing.types.push(choice),
                None => groups.push(EventTypeGroup {
                    name: group,
                    types: vec![choice],
                }),
            }
        }
        groups
    }
}

pub struct EventTypeGroup {
    pub name: &'static str,
    pub types: Vec<EventTypeChoice>,
}

pub struct EventTypeChoice {
    pub name: &'static str,
    pub checked: bool,
}

/// The aggregate whose events these are, as the form groups them; a type this does not
/// know still gets a box, under `Other`.
fn group_of(event_type: &str) -> &'static str {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| event_type.starts_with(p));
    if starts(&["Subscription", "LicenseKey", "LicenseToken", "Device"]) {
        "Subscription"
    } else if starts(&["Product", "Entitlement", "Policy"]) {
        "Product, Entitlement, Policy"
    } else if starts(&["Admin"]) {
        "AdminUser"
    } else if starts(&["WebhookEndpoint"]) {
        "WebhookEndpoint"
    } else {
        "Other"
    }
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

pub async fn create(
    State(app): State<SharedApp>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<NewWebhookForm>,
) -> Result<Response, PanelError> {
    let layout = Layout::signed_in(&app, &session, "webhooks").await;
    let request = CreateWebhookRequest {
        url: fields.url.trim().to_owned(),
        event_types: fields.chosen(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_one_box_in_a_named_group() {
        let form = NewWebhookForm {
            event_types: vec![
                "DeviceActivated".into(),
                "PolicyCreated, AdminCreated".into(),
            ],
            ..NewWebhookForm::default()
        };
        let groups = form.groups();
        let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
        assert_eq!(
            names,
            [
                "Subscription",
                "Product, Entitlement, Policy",
                "AdminUser",
                "WebhookEndpoint"
            ]
        );
        let boxes: Vec<&EventTypeChoice> = groups.iter().flat_map(|g| &g.types).collect();
        assert_eq!(boxes.len(), EVENT_TYPES.len());
        let ticked: Vec<&str> = boxes.iter().filter(|b| b.checked).map(|b| b.name).collect();
        assert_eq!(ticked, ["DeviceActivated", "PolicyCreated", "AdminCreated"]);
    }

    #[test]
    fn no_box_ticked_is_every_event_type() {
        assert_eq!(NewWebhookForm::default().chosen(), None);
        let blank = NewWebhookForm {
            event_types: vec![" ".into()],
            ..NewWebhookForm::default()
        };
        assert_eq!(blank.chosen(), None);
    }
}
