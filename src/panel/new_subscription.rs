//! `/admin/subscriptions/new`: the new-subscription form, of its own or following a policy
//! (whose terms are shown beside the select), and its answer, which shows the full license
//! key once.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flowlytix_aggregates::{PolicyBook, SubscriptionError, SubscriptionId};
use serde::Deserialize;
use uuid::Uuid;

use super::error::PanelError;
use super::forms;
use super::layout::Layout;
use super::policies::Terms;
use super::session::{WriteForm, Writer};
use crate::app::{App, SharedApp};
use crate::auth::browser_sessions::BrowserSession;
use crate::http::extract::RequestContext;
use crate::store::ExecuteError;
use crate::subscriptions::{CreateSubscriptionRequest, ManageError};

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
    /// `<product code>/<policy code>`, or empty for a subscription of its own.
    #[serde(default)]
    pub policy: String,
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

/// A policy a new subscription may follow: an unarchived one, with what it gives.
pub struct PolicyOption {
    /// `<product code>/<policy code>`, what the form sends.
    pub value: String,
    pub name: String,
    pub terms: Terms,
}

/// Every unarchived policy, by product code and code.
fn options(book: &PolicyBook) -> Vec<PolicyOption> {
    let mut options: Vec<PolicyOption> = book
        .iter()
        .filter(|terms| !terms.archived)
        .map(|terms| PolicyOption {
            value: format!("{}/{}", terms.product_code, terms.code),
            name: terms.settings.name.clone(),
            terms: Terms::of(&terms.settings),
        })
        .collect();
    options.sort_by(|a, b| a.value.cmp(&b.value));
    options
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/new_subscription.html")]
pub struct NewPage {
    layout: Layout,
    form: NewSubscriptionForm,
    policies: Vec<PolicyOption>,
    error: Option<String>,
}

impl NewPage {
    async fn new(
        app: &App,
        session: &BrowserSession,
        form: NewSubscriptionForm,
        error: Option<String>,
    ) -> Self {
        Self {
            layout: Layout::signed_in(app, session, "subscriptions").await,
            form,
            policies: options(&app.policies.book()),
            error,
        }
    }
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
    let form = NewSubscriptionForm {
        subscription_id: Uuid::new_v4().to_string(),
        ..NewSubscriptionForm::default()
    };
    Ok(NewPage::new(&app, &session, form, None).await)
}

/// Empty fields are not sent: with a policy they come from it, without one the service
/// says which are required.
fn create_request(form: &NewSubscriptionForm) -> Result<CreateSubscriptionRequest, String> {
    let max_devices = match form.max_devices.trim() {
        "" => None,
        text => Some(forms::count("Max devices", text)?),
    };
    Ok(CreateSubscriptionRequest {
        customer_email: form.customer_email.trim().to_owned(),
        customer_name: form.customer_name.trim().to_owned(),
        organization: forms::optional(&form.organization),
        policy: forms::optional(&form.policy),
        plan: forms::optional(&form.plan),
        max_devices,
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
    let (app, session) = (&app, &session);
    let refused = |form, message: String, status| async move {
        let page = NewPage::new(app, session, form, Some(message)).await;
        Ok((status, page).into_response())
    };
    let request = match create_request(&fields) {
        Ok(request) => request,
        Err(message) => return refused(fields, message, StatusCode::UNPROCESSABLE_ENTITY).await,
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
                layout: Layout::signed_in(app, session, "subscriptions").await,
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
            refused(fields, message, StatusCode::CONFLICT).await
        }
        Err(error) => {
            let error = PanelError::from(error);
            let (status, message) = error.message();
            if status.is_server_error() {
                return Err(error);
            }
            refused(fields, message, status).await
        }
    }
}
