//! `/admin/webhooks/{id}`: one endpoint from its events (consistent right after a write),
//! its edit form, the actions behind a confirmation step (disable, enable, rotate the
//! secret, delete) and the delivery log with a `Redeliver` button per delivery.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use flowlytix_aggregates::webhook_endpoint::WebhookEndpointState;
use flowlytix_aggregates::WebhookEndpointId;
use uuid::Uuid;

use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::login::NoFields;
use super::session::{Reader, WriteForm, Writer};
use super::webhooks::{reason_word, switch, types_shown, NewWebhookForm, SecretPage};
use crate::app::SharedApp;
use crate::auth::browser_sessions::BrowserSession;
use crate::http::extract::RequestContext;
use crate::read::webhooks::AttemptQuery;
use crate::webhooks::UpdateWebhookRequest;

/// The most attempts the page shows (the JSON API pages through all of them).
const LOG_LIMIT: i64 = 500;

pub struct Attempt {
    pub delivery_id: String,
    pub at: String,
    pub event_type: String,
    pub attempt: i32,
    pub status_code: String,
    pub latency: String,
    pub error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/webhook.html")]
pub struct DetailPage {
    layout: Layout,
    id: String,
    url: String,
    event_types: String,
    enabled: bool,
    switch: String,
    description: String,
    created_at: String,
    updated_at: String,
    version: u64,
    /// The edit form: as stored, or as typed when it was refused.
    form: NewWebhookForm,
    error: Option<String>,
    attempts: Vec<Attempt>,
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

async fn load(app: &SharedApp, id: Uuid) -> Result<(WebhookEndpointState, u64), PanelError> {
    let (endpoint, version) = app.webhooks.endpoint(WebhookEndpointId(id)).await?;
    let state = endpoint
        .state()
        .cloned()
        .ok_or_else(|| PanelError::NotFound("No such webhook.".into()))?;
    Ok((state, version))
}

/// The page, with the edit form as typed and the error next to it when given.
async fn render(
    app: &SharedApp,
    session: &BrowserSession,
    id: Uuid,
    typed: Option<(NewWebhookForm, String)>,
) -> Result<DetailPage, PanelError> {
    let (state, version) = load(app, id).await?;
    let query = AttemptQuery {
        after: None,
        limit: Some(LOG_LIMIT),
    };
    let rows = app
        .webhooks
        .delivery_log(WebhookEndpointId(id), &query)
        .await?;
    let attempts = rows
        .into_iter()
        .rev() // newest first: what an admin looking at a failing receiver wants
        .map(|row| Attempt {
            delivery_id: row.delivery_id.to_string(),
            at: time(row.at),
            event_type: row.event_type,
            attempt: row.attempt,
            status_code: row.status_code.map_or("none".into(), |c| c.to_string()),
            latency: format!("{} ms", row.latency_ms),
            error: row.error.unwrap_or_default(),
        })
        .collect();
    let settings = &state.settings;
    let (form, error) = match typed {
        Some((form, error)) => (form, Some(error)),
        None => (
            NewWebhookForm {
                url: settings.url.clone(),
                event_types: settings.event_types.clone().unwrap_or_default(),
                description: settings.description.clone().unwrap_or_default(),
            },
            None,
        ),
    };
    Ok(DetailPage {
        layout: Layout::signed_in(app, session, "webhooks").await,
        id: id.to_string(),
        url: settings.url.clone(),
        event_types: types_shown(settings.event_types.as_deref()),
        enabled: state.enabled,
        switch: switch(state.enabled, reason_word(state.disabled_reason)),
        description: settings.description.clone().unwrap_or_default(),
        created_at: time(state.created_at),
        updated_at: time(state.updated_at),
        version,
        form,
        error,
        attempts,
    })
}

pub async fn page(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    Path(id): Path<Uuid>,
) -> Result<DetailPage, PanelError> {
    render(&app, &session, id, None).await
}

/// The edit form: every field is sent; the aggregate writes an update only if one changed.
pub async fn save(
    State(app): State<SharedApp>,
    Path(id): Path<Uuid>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<NewWebhookForm>,
) -> Result<Response, PanelError> {
    let request = UpdateWebhookRequest {
        url: Some(fields.url.trim().to_owned()),
        event_types: Some(fields.chosen()),
        description: Some(forms::optional(&fields.description)),
        enabled: None,
    };
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app
        .webhooks
        .update(WebhookEndpointId(id), request, metadata)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/admin/webhooks/{id}")).into_response()),
        Err(error) => {
            let error = PanelError::from(error);
            let (status, message) = error.message();
            if status.is_server_error() || status == StatusCode::NOT_FOUND {
                return Err(error);
            }
            let page = render(&app, &session, id, Some((fields, message))).await?;
            Ok((status, page).into_response())
        }
    }
}

/// The actions behind a confirmation step.
#[derive(Clone, Copy)]
enum Action {
    Disable,
    Enable,
    RotateSecret,
    Delete,
}

impl Action {
    fn parse(slug: &str) -> Option<Self> {
        Some(match slug {
            "disable" => Self::Disable,
            "enable" => Self::Enable,
            "rotate-secret" => Self::RotateSecret,
            "delete" => Self::Delete,
            _ => return None,
        })
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::RotateSecret => "rotate-secret",
            Self::Delete => "delete",
        }
    }

    fn question(self) -> &'static str {
        match self {
            Self::Disable => "Disable this webhook? Its deliveries wait until it is enabled again.",
            Self::Enable => "Enable this webhook? Waiting deliveries are sent, and its past failures no longer count towards disabling it.",
            Self::RotateSecret => "Rotate the signing secret? The new secret is shown once; the old one still signs for a short grace period.",
            Self::Delete => "Delete this webhook? Nothing more is delivered to it; its history stays.",
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/webhook_confirm.html")]
pub struct ConfirmPage {
    layout: Layout,
    id: String,
    url: String,
    slug: &'static str,
    question: &'static str,
}

pub async fn confirm(
    State(app): State<SharedApp>,
    Writer(session): Writer,
    Path(id): Path<Uuid>,
    PageQuery(query): PageQuery<forms::ConfirmQuery>,
) -> Result<ConfirmPage, PanelError> {
    let action = Action::parse(&query.action)
        .ok_or_else(|| PanelError::NotFound("No such action.".into()))?;
    let (state, _) = load(&app, id).await?;
    Ok(ConfirmPage {
        layout: Layout::signed_in(&app, &session, "webhooks").await,
        id: id.to_string(),
        url: state.settings.url,
        slug: action.slug(),
        question: action.question(),
    })
}

pub async fn act(
    State(app): State<SharedApp>,
    Path((id, slug)): Path<(Uuid, String)>,
    context: RequestContext,
    WriteForm { session, .. }: WriteForm<NoFields>,
) -> Result<Response, PanelError> {
    let action =
        Action::parse(&slug).ok_or_else(|| PanelError::NotFound("No such action.".into()))?;
    let metadata = context.metadata(session.admin.admin_id.to_string());
    let endpoint_id = WebhookEndpointId(id);
    let switch_to = |enabled| UpdateWebhookRequest {
        enabled: Some(enabled),
        ..UpdateWebhookRequest::default()
    };
    let detail = Redirect::to(&format!("/admin/webhooks/{id}")).into_response();
    Ok(match action {
        Action::Disable => {
            app.webhooks
                .update(endpoint_id, switch_to(false), metadata)
                .await?;
            detail
        }
        Action::Enable => {
            app.webhooks
                .update(endpoint_id, switch_to(true), metadata)
                .await?;
            detail
        }
        Action::RotateSecret => {
            let made = app.webhooks.rotate_secret(endpoint_id, metadata).await?;
            let layout = Layout::signed_in(&app, &session, "webhooks").await;
            SecretPage::new(layout, "Signing secret rotated", &made).into_response()
        }
        Action::Delete => {
            let committed = app.webhooks.delete(endpoint_id, metadata).await?;
            // The list waits until it no longer shows it.
            let to = format!("/admin/webhooks?min_position={}", committed.position);
            Redirect::to(&to).into_response()
        }
    })
}

/// Queues a delivery again, due now; back to the page, whose log shows the new attempt.
pub async fn redeliver(
    State(app): State<SharedApp>,
    Path((id, delivery_id)): Path<(Uuid, Uuid)>,
    WriteForm { .. }: WriteForm<NoFields>,
) -> Result<Response, PanelError> {
    app.webhooks
        .redeliver(WebhookEndpointId(id), delivery_id)
        .await?;
    Ok(Redirect::to(&format!("/admin/webhooks/{id}")).into_response())
}
