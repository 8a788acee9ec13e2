//! `/admin/policies/{id}`: one policy from its events (consistent right after a write), its
//! entitlements, how many subscriptions follow it, its edit form (every setting but the
//! product and the code) and archiving or unarchiving behind a confirmation step.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use flowlytix_aggregates::policy::{ExpirationBasis, HeartbeatCull, LicenseModel, PolicyState};
use flowlytix_aggregates::{PolicyId, PolicySettings};
use flowlytix_projections::catalogue::EntitlementRecord;
use uuid::Uuid;

use super::catalogue::{duration, moment, refusal, ConfirmPage};
use super::error::PanelError;
use super::layout::Layout;
use super::login::NoFields;
use super::policies::{Choice, PolicyForm, Terms};
use super::products::all;
use super::session::{Reader, WriteForm, Writer};
use crate::app::{App, SharedApp};
use crate::auth::browser_sessions::BrowserSession;
use crate::http::extract::RequestContext;
use crate::read;

#[derive(Template, WebTemplate)]
#[template(path = "panel/policy.html")]
pub struct DetailPage {
    layout: Layout,
    id: String,
    policy: PolicyState,
    terms: Terms,
    trial_duration: String,
    expiration_basis: &'static str,
    token_ttl: String,
    leases: LeaseTerms,
    /// Its entitlements: code and name (a deleted one by its code alone).
    entitlements: Vec<(String, String)>,
    subscriptions: i64,
    created_at: String,
    updated_at: String,
    version: u64,
    form: PolicyForm,
    choices: Vec<Choice>,
    error: Option<String>,
}

/// A policy's seat and heartbeat settings, in words.
struct LeaseTerms {
    model: &'static str,
    heartbeats: String,
    churn: String,
    borrow: String,
}

impl LeaseTerms {
    fn of(settings: &PolicySettings) -> Self {
        let heartbeats = match settings.lease_duration() {
            None => "not required".to_owned(),
            Some(every) => {
                let cull = match settings.heartbeat_cull {
                    HeartbeatCull::Deactivate => "deactivated",
                    HeartbeatCull::Keep => "kept",
                };
                let revive = duration(settings.resurrection_window.as_ref(), "");
                let revive = if revive.is_empty() {
                    "no revival".to_owned()
                } else {
                    format!("revived within {revive}")
                };
                format!("every {every}; dead devices {cull}, {revive}")
            }
        };
        let churn = match (settings.max_deactivations, &settings.deactivation_window) {
            (Some(max), Some(window)) => format!("{max} per {window}"),
            _ => "none".to_owned(),
        };
        Self {
            model: match settings.license_model {
                LicenseModel::NodeLocked => "node-locked",
                LicenseModel::Floating => "floating: max devices counts live leases",
            },
            heartbeats,
            churn,
            borrow: duration(settings.max_borrow.as_ref(), "not allowed"),
        }
    }
}

async fn load(app: &App, id: Uuid) -> Result<(PolicyState, u64), PanelError> {
    let (policy, version) = app.catalogue.policy(PolicyId(id)).await?;
    let state = policy
        .state()
        .cloned()
        .ok_or_else(|| PanelError::NotFound("No such policy.".into()))?;
    Ok((state, version))
}

fn named(codes: &[String], catalogue: &[EntitlementRecord]) -> Vec<(String, String)> {
    codes
        .iter()
        .map(|code| {
            let name = catalogue.iter().find(|e| e.code == *code);
            (
                code.clone(),
                name.map(|e| e.name.clone()).unwrap_or_default(),
            )
        })
        .collect()
}

async fn render(
    app: &App,
    session: &BrowserSession,
    id: Uuid,
    typed: Option<PolicyForm>,
    error: Option<String>,
) -> Result<DetailPage, PanelError> {
    let (policy, version) = load(app, id).await?;
    let (catalogue, _) = read::catalogue::entitlements(&app.db, &all()).await?;
    let (_, following) =
        read::analytics::subscriptions_by_policy(&app.db, &app.policies.book()).await?;
    let settings = &policy.settings;
    let form = typed.unwrap_or_else(|| PolicyForm::of(settings));
    let codes: Vec<String> = settings
        .entitlements
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(DetailPage {
        layout: Layout::signed_in(app, session, "policies").await,
        id: id.to_string(),
        terms: Terms::of(settings),
        trial_duration: duration(settings.trial_duration.as_ref(), "no trial"),
        expiration_basis: match settings.expiration_basis {
            ExpirationBasis::FromCreation => "from creation",
            ExpirationBasis::FromFirstActivation => "from first activation",
        },
        token_ttl: duration(settings.token_ttl.as_ref(), "the server's default"),
        leases: LeaseTerms::of(settings),
        entitlements: named(&codes, &catalogue),
        subscriptions: following
            .get(&format!("{}/{}", policy.product_code, policy.code))
            .copied()
            .unwrap_or(0),
        created_at: moment(policy.created_at),
        updated_at: moment(policy.updated_at),
        version,
        choices: form.choices(&catalogue),
        form,
        error,
        policy,
    })
}

pub async fn page(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    Path(id): Path<Uuid>,
) -> Result<DetailPage, PanelError> {
    render(&app, &session, id, None, None).await
}

pub async fn save(
    State(app): State<SharedApp>,
    Path(id): Path<Uuid>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<PolicyForm>,
) -> Result<Response, PanelError> {
    let refused = match fields.update_request() {
        Ok(request) => {
            let metadata = context.metadata(session.admin.admin_id.to_string());
            match app
                .catalogue
                .update_policy(PolicyId(id), request, metadata)
                .await
            {
                Ok(_) => return Ok(Redirect::to(&format!("/admin/policies/{id}")).into_response()),
                Err(error) => refusal(error)?,
            }
        }
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let (status, message) = refused;
    let page = render(&app, &session, id, Some(fields), Some(message)).await?;
    Ok((status, page).into_response())
}

/// `archive` or `unarchive`: whether the action archives.
fn archives(slug: &str) -> Result<bool, PanelError> {
    match slug {
        "archive" => Ok(true),
        "unarchive" => Ok(false),
        _ => Err(PanelError::NotFound("No such action.".into())),
    }
}

pub async fn confirm(
    State(app): State<SharedApp>,
    Writer(session): Writer,
    Path((id, slug)): Path<(Uuid, String)>,
) -> Result<ConfirmPage, PanelError> {
    let archive = archives(&slug)?;
    let (policy, _) = load(&app, id).await?;
    Ok(ConfirmPage {
        layout: Layout::signed_in(&app, &session, "policies").await,
        question: if archive {
            "Archive this policy? No new subscription may follow it; those that follow it keep doing so."
        } else {
            "Unarchive this policy? New subscriptions may follow it again."
        },
        subject: format!(
            "Policy {}/{} ({})",
            policy.product_code, policy.code, policy.settings.name
        ),
        action: format!("/admin/policies/{id}/{slug}"),
        back: format!("/admin/policies/{id}"),
    })
}

pub async fn act(
    State(app): State<SharedApp>,
    Path((id, slug)): Path<(Uuid, String)>,
    context: RequestContext,
    WriteForm { session, .. }: WriteForm<NoFields>,
) -> Result<Response, PanelError> {
    let archive = archives(&slug)?;
    let metadata = context.metadata(session.admin.admin_id.to_string());
    app.catalogue
        .archive_policy(PolicyId(id), archive, metadata)
        .await?;
    Ok(Redirect::to(&format!("/admin/policies/{id}")).into_response())
}
