//! The actions on a subscription page: each behind a confirmation page with a `Confirm`
//! button (suspend, resume, cancel, delete, regenerate the key), and deactivating a device.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use flowlytix_aggregates::{DeviceId, SubscriptionId};
use serde::Deserialize;
use uuid::Uuid;

use super::detail::refused;
use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::login::NoFields;
use super::new_subscription::KeyPage;
use super::session::{WriteForm, Writer};
use crate::app::SharedApp;
use crate::http::extract::RequestContext;
use crate::subscriptions::{RegenerateKeyRequest, StatusChange, UpdateSubscriptionRequest};

/// The actions behind a confirmation step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Suspend,
    Resume,
    Cancel,
    Delete,
    RegenerateKey,
}

impl Action {
    fn parse(slug: &str) -> Option<Self> {
        Some(match slug {
            "suspend" => Self::Suspend,
            "resume" => Self::Resume,
            "cancel" => Self::Cancel,
            "delete" => Self::Delete,
            "regenerate-key" => Self::RegenerateKey,
            _ => return None,
        })
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
            Self::Delete => "delete",
            Self::RegenerateKey => "regenerate-key",
        }
    }

    fn question(self) -> &'static str {
        match self {
            Self::Suspend => "Suspend this subscription? Its devices stop validating until it is resumed.",
            Self::Resume => "Resume this subscription? Its devices validate again.",
            Self::Cancel => "Cancel this subscription? This cannot be undone: a canceled subscription never validates again.",
            Self::Delete => "Delete this subscription? It leaves every list and never validates again; its history stays.",
            Self::RegenerateKey => "Regenerate the license key? Do this when the key has leaked. The current key stops working at once, and so does every license token issued under it: apps must activate again with the new key. Activated devices stay activated and keep their slots, unless you also deactivate them below.",
        }
    }

    fn takes_reason(self) -> bool {
        matches!(self, Self::Suspend | Self::Cancel)
    }

    /// Whether the confirmation offers to deactivate every device as well.
    fn offers_device_deactivation(self) -> bool {
        self == Self::RegenerateKey
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/confirm.html")]
pub struct ConfirmPage {
    layout: Layout,
    id: String,
    customer: String,
    slug: &'static str,
    question: &'static str,
    takes_reason: bool,
    offers_device_deactivation: bool,
}

pub async fn confirm(
    State(app): State<SharedApp>,
    Writer(session): Writer,
    Path(id): Path<Uuid>,
    PageQuery(query): PageQuery<forms::ConfirmQuery>,
) -> Result<ConfirmPage, PanelError> {
    let action = Action::parse(&query.action)
        .ok_or_else(|| PanelError::NotFound("No such action.".into()))?;
    let (subscription, _) = app
        .subscriptions
        .subscription(SubscriptionId(id), None)
        .await?;
    let customer = subscription
        .live()
        .map(|s| s.customer_email.to_string())
        .unwrap_or_default();
    Ok(ConfirmPage {
        layout: Layout::signed_in(&app, &session, "subscriptions").await,
        id: id.to_string(),
        customer,
        slug: action.slug(),
        question: action.question(),
        takes_reason: action.takes_reason(),
        offers_device_deactivation: action.offers_device_deactivation(),
    })
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    reason: String,
    /// The checkbox: present (whatever its value) when ticked.
    #[serde(default)]
    deactivate_devices: Option<String>,
}

pub async fn act(
    State(app): State<SharedApp>,
    Path((id, slug)): Path<(Uuid, String)>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<ActionForm>,
) -> Result<Response, PanelError> {
    let action =
        Action::parse(&slug).ok_or_else(|| PanelError::NotFound("No such action.".into()))?;
    let metadata = context.metadata(session.admin.admin_id.to_string());
    let subscription_id = SubscriptionId(id);
    let status_change = |status| UpdateSubscriptionRequest {
        status: Some(status),
        reason: action
            .takes_reason()
            .then(|| forms::optional(&fields.reason))
            .flatten(),
        ..UpdateSubscriptionRequest::default()
    };
    let outcome = match action {
        Action::Suspend | Action::Resume | Action::Cancel => {
            let change = match action {
                Action::Suspend => StatusChange::Suspended,
                Action::Resume => StatusChange::Active,
                _ => StatusChange::Canceled,
            };
            app.subscriptions
                .update(subscription_id, status_change(change), None, metadata)
                .await
                .map(|_| Redirect::to(&format!("/admin/subscriptions/{id}")).into_response())
        }
        Action::Delete => app
            .subscriptions
            .delete(subscription_id, None, metadata)
            .await
            .map(|committed| {
                // The list waits until it no longer shows it.
                let to = format!("/admin/subscriptions?min_position={}", committed.position);
                Redirect::to(&to).into_response()
            }),
        Action::RegenerateKey => {
            match app
                .subscriptions
                .regenerate_license_key(
                    subscription_id,
                    RegenerateKeyRequest {
                        deactivate_devices: fields.deactivate_devices.is_some(),
                    },
                    metadata,
                )
                .await
            {
                Ok(created) => {
                    let customer = created
                        .committed
                        .aggregate
                        .state()
                        .map(|s| s.customer_email.to_string())
                        .unwrap_or_default();
                    let page = KeyPage {
                        layout: Layout::signed_in(&app, &session, "subscriptions").await,
                        heading: "License key regenerated",
                        subscription_id: id.to_string(),
                        customer,
                        license_key: created.license_key.expose().to_owned(),
                        position: created.committed.position,
                    };
                    Ok(page.into_response())
                }
                Err(error) => Err(error),
            }
        }
    };
    match outcome {
        Ok(response) => Ok(response),
        Err(error) => refused(&app, &session, id, None, error.into()).await,
    }
}

pub async fn deactivate_device(
    State(app): State<SharedApp>,
    Path(device_id): Path<Uuid>,
    context: RequestContext,
    WriteForm { session, .. }: WriteForm<NoFields>,
) -> Result<Response, PanelError> {
    let metadata = context.metadata(session.admin.admin_id.to_string());
    let found = app
        .subscriptions
        .deactivate_device(DeviceId(device_id), metadata)
        .await?;
    let to = format!("/admin/subscriptions/{}", found.subscription.id.as_uuid());
    Ok(Redirect::to(&to).into_response())
}
