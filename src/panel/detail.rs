//! `/admin/subscriptions/{id}`: one subscription from its events (so it is current right
//! after a write), its devices, the edit form, its history, and its state as of any past
//! instant. Its action buttons lead to `actions`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use flowlytix_aggregates::SubscriptionId;
use flowlytix_eventstore::log::aggregate_history;
use serde::Deserialize;
use uuid::Uuid;

use super::actors::{self, ActorShown};
use super::error::PanelError;
use super::events::actor_of;
use super::following::{self, PolicyShown};
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::{Reader, WriteForm};
use crate::app::{App, SharedApp};
use crate::auth::browser_sessions::BrowserSession;
use crate::http::extract::RequestContext;
use crate::http::views::{DeviceView, SubscriptionView};
use crate::read::leases::DeviceLeases;
use crate::subscriptions::{ManageError, UpdateSubscriptionRequest};

/// What the edit form holds, as typed.
#[derive(Deserialize, Default)]
pub struct EditForm {
    #[serde(default)]
    version: String,
    #[serde(default)]
    customer_email: String,
    #[serde(default)]
    customer_name: String,
    #[serde(default)]
    organization: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    max_devices: String,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    expires_at: String,
    #[serde(default)]
    trial_ends_at: String,
    #[serde(default)]
    features: String,
}

impl EditForm {
    /// `own_features`: the entitlements it has besides its policy's (all of them without
    /// one), so that saving the form unchanged keeps the policy's as the policy's.
    fn of(view: &SubscriptionView, own_features: Vec<String>) -> Self {
        Self {
            version: view.version.to_string(),
            customer_email: view.customer_email.clone(),
            customer_name: view.customer_name.clone(),
            organization: view.organization.clone().unwrap_or_default(),
            plan: view.plan.clone(),
            max_devices: view.max_devices.to_string(),
            starts_at: forms::instant_field(Some(view.starts_at)),
            expires_at: forms::instant_field(view.expires_at),
            trial_ends_at: forms::instant_field(view.trial_ends_at),
            features: own_features.join(", "),
        }
    }

    fn request(&self) -> Result<UpdateSubscriptionRequest, String> {
        Ok(UpdateSubscriptionRequest {
            plan: Some(self.plan.trim().to_owned()),
            max_devices: Some(forms::count("Max devices", &self.max_devices)?),
            // A period always has a start: left empty, it stays as it is.
            starts_at: forms::instant("Starts at", &self.starts_at)?,
            expires_at: Some(forms::instant("Expires at", &self.expires_at)?),
            trial_ends_at: Some(forms::instant("Trial ends at", &self.trial_ends_at)?),
            customer_email: Some(self.customer_email.trim().to_owned()),
            customer_name: Some(self.customer_name.trim().to_owned()),
            organization: Some(forms::optional(&self.organization)),
            features: Some(forms::list(&self.features)),
            ..UpdateSubscriptionRequest::default()
        })
    }
}

pub struct HistoryItem {
    pub event_type: String,
    pub actor: ActorShown,
    pub at: String,
    /// The instant for the as-of view of the state this event left.
    pub at_param: String,
    pub ip: String,
}

pub struct DeviceItem {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub app_version: String,
    pub active: bool,
    pub status: &'static str,
    pub activated_at: String,
    pub last_seen_at: String,
    pub last_heartbeat_at: String,
    pub lease_expires_at: String,
    /// live, dead or borrowed (empty for a device deactivated otherwise).
    pub state: &'static str,
}

impl From<&DeviceView> for DeviceItem {
    fn from(device: &DeviceView) -> Self {
        Self {
            id: device.id.to_string(),
            name: device
                .name
                .clone()
                .or_else(|| device.hostname.clone())
                .unwrap_or_else(|| "unnamed device".into()),
            platform: [device.platform.clone(), device.os_version.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            app_version: device.app_version.clone().unwrap_or_default(),
            active: device.status == "active",
            status: device.status,
            activated_at: moment(device.activated_at),
            last_seen_at: device.last_seen_at.map(moment).unwrap_or_default(),
            last_heartbeat_at: device.last_heartbeat_at.map(moment).unwrap_or_default(),
            lease_expires_at: device.lease_expires_at.map(moment).unwrap_or_default(),
            state: device.state.map_or("", |s| s.as_str()),
        }
    }
}

/// A metadata value as shown: a string as it is, anything else as compact JSON.
fn metadata_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn moment(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/subscription.html")]
pub struct DetailPage {
    layout: Layout,
    id: String,
    title: String,
    view: SubscriptionView,
    /// Its policy, its own values beside the policy's, its grace, its entitlements.
    policy: PolicyShown,
    organization: String,
    starts_at: String,
    expires_at: String,
    trial_ends_at: String,
    created_at: String,
    /// The subscription's metadata, key and value (text as it is, the rest as JSON).
    metadata: Vec<(String, String)>,
    devices: Vec<DeviceItem>,
    history: Vec<HistoryItem>,
    /// Set when showing a past state: no write controls then.
    as_of: Option<String>,
    as_of_text: String,
    as_of_error: Option<String>,
    edit: EditForm,
    error: Option<String>,
    can_suspend: bool,
    can_resume: bool,
    can_cancel: bool,
}

impl DetailPage {
    fn writable(&self) -> bool {
        self.layout.can_write() && self.as_of.is_none()
    }
}

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    #[serde(default)]
    as_of: String,
}

/// What the page shows besides the subscription: a kept form, an error beside it.
#[derive(Default)]
struct Shown {
    as_of_text: String,
    edit: Option<EditForm>,
    error: Option<String>,
}

async fn render(
    app: &App,
    session: &BrowserSession,
    id: Uuid,
    shown: Shown,
) -> Result<DetailPage, PanelError> {
    let (as_of, as_of_error) = match forms::instant("As of", &shown.as_of_text) {
        Ok(instant) => (instant, None),
        Err(message) => (None, Some(message)),
    };
    let (as_of, as_of_error, found) = match app
        .subscriptions
        .subscription(SubscriptionId(id), as_of)
        .await
    {
        Ok(found) => (as_of, as_of_error, found),
        // Before it existed (or after its deletion): say so, show it as it is now.
        Err(ManageError::NotFound) if as_of.is_some() => (
            None,
            Some("As of: the subscription did not exist at that instant.".to_owned()),
            app.subscriptions
                .subscription(SubscriptionId(id), None)
                .await?,
        ),
        Err(error) => return Err(error.into()),
    };
    let (subscription, version) = found;
    let state = subscription
        .live()
        .ok_or_else(|| PanelError::NotFound("No such subscription.".into()))?;
    let book = app.policies.covering(state.policy_id).await;
    // The lease table holds only the present: a past state is judged by its events alone.
    let leases = match as_of {
        Some(_) => DeviceLeases::none(),
        None => DeviceLeases::of_subscription(&app.db, state).await?,
    };
    let now = as_of.unwrap_or_else(Utc::now);
    let view = SubscriptionView::new(state, version, now, &book, &leases);
    let policy = following::shown(&view, &book);
    let own_features = policy
        .entitlements
        .iter()
        .filter(|e| e.own || policy.following.is_none())
        .map(|e| e.code.clone())
        .collect();
    let history = history(app, id).await?;
    let status = view.status.as_str();
    let never = |t: Option<DateTime<Utc>>, none: &str| t.map_or(none.to_owned(), moment);
    Ok(DetailPage {
        layout: Layout::signed_in(app, session, "subscriptions").await,
        id: id.to_string(),
        title: if view.customer_name.trim().is_empty() {
            view.customer_email.clone()
        } else {
            view.customer_name.clone()
        },
        policy,
        organization: view.organization.clone().unwrap_or_default(),
        starts_at: moment(view.starts_at),
        expires_at: never(view.expires_at, "never (perpetual)"),
        trial_ends_at: never(view.trial_ends_at, "no trial"),
        created_at: moment(view.created_at),
        metadata: view
            .metadata
            .iter()
            .map(|(key, value)| (key.clone(), metadata_value(value)))
            .collect(),
        devices: view
            .devices
            .iter()
            .flatten()
            .map(DeviceItem::from)
            .collect(),
        history,
        as_of: as_of.map(moment),
        as_of_text: shown.as_of_text,
        as_of_error,
        edit: shown
            .edit
            .unwrap_or_else(|| EditForm::of(&view, own_features)),
        error: shown.error,
        can_suspend: !matches!(status, "suspended" | "canceled"),
        can_resume: matches!(status, "suspended" | "past_due"),
        can_cancel: status != "canceled",
        view,
    })
}

/// The subscription's events, newest first, with their actors by name.
async fn history(app: &App, id: Uuid) -> Result<Vec<HistoryItem>, PanelError> {
    let mut connection = app.db.acquire().await?;
    let records = aggregate_history(connection.conn(), "Subscription", &id.to_string()).await?;
    drop(connection);
    let raw_actors: Vec<String> = records
        .iter()
        .rev()
        .map(|record| actor_of(&record.metadata))
        .collect();
    let shown = actors::shown(&app.db, &raw_actors).await?;
    let items = records
        .into_iter()
        .rev()
        .zip(shown)
        .map(|(record, actor)| {
            let text = |name: &str| {
                record.metadata[name]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            let at = text("occurred_at")
                .parse::<DateTime<Utc>>()
                .unwrap_or(record.recorded_at);
            HistoryItem {
                event_type: record.event_type,
                actor,
                at: moment(at),
                at_param: forms::instant_field(Some(at)),
                ip: text("ip"),
            }
        })
        .collect();
    Ok(items)
}

pub async fn page(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    Path(id): Path<Uuid>,
    PageQuery(query): PageQuery<DetailQuery>,
) -> Result<DetailPage, PanelError> {
    let shown = Shown {
        as_of_text: query.as_of,
        ..Shown::default()
    };
    render(&app, &session, id, shown).await
}

/// The page again with the refusal next to the form, which keeps what was typed.
pub(super) async fn refused(
    app: &App,
    session: &BrowserSession,
    id: Uuid,
    edit: Option<EditForm>,
    error: PanelError,
) -> Result<Response, PanelError> {
    let (status, message) = error.message();
    if status.is_server_error() || status == StatusCode::NOT_FOUND {
        return Err(error);
    }
    let shown = Shown {
        edit,
        error: Some(message),
        ..Shown::default()
    };
    let page = render(app, session, id, shown).await?;
    Ok((status, page).into_response())
}

pub async fn save(
    State(app): State<SharedApp>,
    Path(id): Path<Uuid>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<EditForm>,
) -> Result<Response, PanelError> {
    let request = match fields.request() {
        Ok(request) => request,
        Err(message) => {
            let error = PanelError::BadRequest(message);
            return refused(&app, &session, id, Some(fields), error).await;
        }
    };
    // The version the form was rendered at: a change made meanwhile is refused, not undone.
    let expected_version = fields.version.trim().parse().ok();
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app
        .subscriptions
        .update(SubscriptionId(id), request, expected_version, metadata)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/admin/subscriptions/{id}")).into_response()),
        Err(error) => refused(&app, &session, id, Some(fields), error.into()).await,
    }
}
