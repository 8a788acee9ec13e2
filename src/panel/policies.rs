//! `/admin/policies`: the list (with how many subscriptions follow each policy) and the
//! new-policy form. One policy's page, its edit form and archiving are in
//! `policy_detail`; the form's fields are read here for both.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use flowlytix_aggregates::policy::{
    ExpirationBasis, ExpirationStrategy, HeartbeatCull, LicenseModel,
};
use flowlytix_aggregates::PolicySettings;
use flowlytix_projections::catalogue::{EntitlementRecord, ProductRecord};
use serde::Deserialize;
use uuid::Uuid;

use super::catalogue::{duration, refusal};
use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::products::all;
use super::session::{Reader, WriteForm, Writer};
use crate::app::{App, SharedApp};
use crate::auth::browser_sessions::BrowserSession;
use crate::catalogue::{Basis, CreatePolicyRequest, Cull, Model, Strategy, UpdatePolicyRequest};
use crate::http::extract::RequestContext;
use crate::read;
use crate::read::catalogue::PolicyQuery;
use crate::read::consistency::wait_for_position;

/// What a policy grants, as its list row and the new-subscription form show it.
pub struct Terms {
    pub max_devices: u32,
    pub duration: String,
    pub grace: String,
    pub entitlements: String,
}

impl Terms {
    pub fn of(settings: &PolicySettings) -> Self {
        let grace = settings
            .grace_period
            .as_ref()
            .filter(|_| settings.expiration_strategy == ExpirationStrategy::AllowGrace);
        Self {
            max_devices: settings.max_devices,
            duration: duration(settings.duration.as_ref(), "perpetual"),
            grace: duration(grace, "none"),
            entitlements: settings
                .entitlements
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

pub struct Row {
    pub id: String,
    pub product_code: String,
    pub code: String,
    pub name: String,
    pub terms: Terms,
    pub archived: bool,
    pub subscriptions: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/policies.html")]
pub struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    /// The product the list is narrowed to, by code.
    product: String,
    consistent: bool,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    /// Only this product's policies (a product code).
    #[serde(default)]
    pub product: String,
    /// After the admin's own write: wait until the list shows it.
    pub min_position: Option<i64>,
}

pub async fn list(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<ListPage, PanelError> {
    let consistent = wait_for_position(&app.db, "catalogue", query.min_position).await?;
    let every = PolicyQuery {
        product_id: None,
        archived: None,
        page: Some(1),
        per_page: Some(read::MAX_PER_PAGE),
        min_position: None,
    };
    let (policies, _) = read::catalogue::policies(&app.db, &every).await?;
    let (_, following) =
        read::analytics::subscriptions_by_policy(&app.db, &app.policies.book()).await?;
    let product = query.product.trim().to_owned();
    let rows = policies
        .into_iter()
        .filter(|row| product.is_empty() || row.product_code == product)
        .map(|row| Row {
            id: row.id.to_string(),
            subscriptions: following
                .get(&format!("{}/{}", row.product_code, row.code))
                .copied()
                .unwrap_or(0),
            terms: Terms::of(&row.settings.0),
            product_code: row.product_code,
            code: row.code,
            name: row.name,
            archived: row.archived,
        })
        .collect();
    Ok(ListPage {
        layout: Layout::signed_in(&app, &session, "policies").await,
        rows,
        product,
        consistent,
    })
}

/// The policy form as typed: new (every field) and edit (all but product and code).
#[derive(Deserialize, Default)]
pub struct PolicyForm {
    /// The product's id.
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub max_devices: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub trial_duration: String,
    #[serde(default)]
    pub expiration_basis: String,
    #[serde(default)]
    pub expiration_strategy: String,
    #[serde(default)]
    pub grace_period: String,
    #[serde(default)]
    pub token_ttl: String,
    #[serde(default)]
    pub license_model: String,
    /// Empty: no heartbeats (`require_heartbeat` follows it).
    #[serde(default)]
    pub heartbeat_duration: String,
    #[serde(default)]
    pub heartbeat_cull: String,
    #[serde(default)]
    pub resurrection_window: String,
    #[serde(default)]
    pub max_deactivations: String,
    #[serde(default)]
    pub deactivation_window: String,
    #[serde(default)]
    pub max_borrow: String,
    /// The ticked boxes: the field repeats, once per box.
    #[serde(default, deserialize_with = "forms::one_or_many")]
    pub entitlements: Vec<String>,
}

/// An entitlement as a checkbox of the form.
pub struct Choice {
    pub code: String,
    pub name: String,
    pub checked: bool,
}

impl PolicyForm {
    /// The form filled with a policy's settings.
    pub fn of(settings: &PolicySettings) -> Self {
        let text = |d: Option<&flowlytix_aggregates::IsoDuration>| duration(d, "");
        Self {
            product: String::new(),
            name: settings.name.clone(),
            code: String::new(),
            max_devices: settings.max_devices.to_string(),
            duration: text(settings.duration.as_ref()),
            trial_duration: text(settings.trial_duration.as_ref()),
            expiration_basis: match settings.expiration_basis {
                ExpirationBasis::FromCreation => "from_creation",
                ExpirationBasis::FromFirstActivation => "from_first_activation",
            }
            .into(),
            expiration_strategy: match settings.expiration_strategy {
                ExpirationStrategy::Restrict => "restrict",
                ExpirationStrategy::AllowGrace => "allow_grace",
            }
            .into(),
            grace_period: text(settings.grace_period.as_ref()),
            token_ttl: text(settings.token_ttl.as_ref()),
            license_model: match settings.license_model {
                LicenseModel::NodeLocked => "node_locked",
                LicenseModel::Floating => "floating",
            }
            .into(),
            heartbeat_duration: text(settings.lease_duration()),
            heartbeat_cull: match settings.heartbeat_cull {
                HeartbeatCull::Deactivate => "deactivate",
                HeartbeatCull::Keep => "keep",
            }
            .into(),
            resurrection_window: text(settings.resurrection_window.as_ref()),
            max_deactivations: settings
                .max_deactivations
                .map(|max| max.to_string())
                .unwrap_or_default(),
            deactivation_window: text(settings.deactivation_window.as_ref()),
            max_borrow: text(settings.max_borrow.as_ref()),
            entitlements: settings
                .entitlements
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }

    /// Every entitlement of the catalogue as a box, ticked as in this form.
    pub fn choices(&self, catalogue: &[EntitlementRecord]) -> Vec<Choice> {
        catalogue
            .iter()
            .map(|e| Choice {
                code: e.code.clone(),
                name: e.name.clone(),
                checked: self.entitlements.contains(&e.code),
            })
            .collect()
    }

    fn basis(&self) -> Result<Basis, String> {
        match self.expiration_basis.as_str() {
            "" | "from_creation" => Ok(Basis::FromCreation),
            "from_first_activation" => Ok(Basis::FromFirstActivation),
            _ => Err("Expiration basis: from creation or from first activation".into()),
        }
    }

    fn strategy(&self) -> Result<Strategy, String> {
        match self.expiration_strategy.as_str() {
            "" | "restrict" => Ok(Strategy::Restrict),
            "allow_grace" => Ok(Strategy::AllowGrace),
            _ => Err("Expiration strategy: restrict or allow grace".into()),
        }
    }

    fn model(&self) -> Result<Model, String> {
        match self.license_model.as_str() {
            "" | "node_locked" => Ok(Model::NodeLocked),
            "floating" => Ok(Model::Floating),
            _ => Err("License model: node-locked or floating".into()),
        }
    }

    fn cull(&self) -> Result<Cull, String> {
        match self.heartbeat_cull.as_str() {
            "" | "deactivate" => Ok(Cull::Deactivate),
            "keep" => Ok(Cull::Keep),
            _ => Err("Dead devices: deactivate or keep".into()),
        }
    }

    fn max_deactivations(&self) -> Result<Option<u32>, String> {
        match self.max_deactivations.trim() {
            "" => Ok(None),
            raw => forms::count("Max deactivations", raw).map(Some),
        }
    }

    /// The heartbeat settings the form gives: heartbeats are required when a duration is
    /// set, and the dead-device choice only counts then.
    fn heartbeats(&self) -> Result<(bool, Option<String>, Option<Cull>), String> {
        let duration = forms::optional(&self.heartbeat_duration);
        let cull = duration.is_some().then(|| self.cull()).transpose()?;
        Ok((duration.is_some(), duration, cull))
    }

    pub fn create_request(&self) -> Result<CreatePolicyRequest, String> {
        let product = Uuid::parse_str(self.product.trim())
            .map_err(|_| "Product: choose the product the policy belongs to".to_owned())?;
        let mut request = CreatePolicyRequest::new(
            product,
            self.name.trim().to_owned(),
            self.code.trim().to_owned(),
            forms::count("Max devices", &self.max_devices)?,
        );
        request.duration = forms::optional(&self.duration);
        request.trial_duration = forms::optional(&self.trial_duration);
        request.expiration_basis = Some(self.basis()?);
        request.expiration_strategy = Some(self.strategy()?);
        request.grace_period = forms::optional(&self.grace_period);
        request.token_ttl = forms::optional(&self.token_ttl);
        request.entitlements = Some(self.entitlements.clone());
        let (beats, duration, cull) = self.heartbeats()?;
        request.license_model = Some(self.model()?);
        request.require_heartbeat = Some(beats);
        request.heartbeat_duration = duration;
        request.heartbeat_cull = cull;
        request.resurrection_window = forms::optional(&self.resurrection_window);
        request.max_deactivations = self.max_deactivations()?;
        request.deactivation_window = forms::optional(&self.deactivation_window);
        request.max_borrow = forms::optional(&self.max_borrow);
        Ok(request)
    }

    /// Every setting the form shows; an empty duration clears it.
    pub fn update_request(&self) -> Result<UpdatePolicyRequest, String> {
        let mut request = UpdatePolicyRequest::default();
        request.name = Some(self.name.trim().to_owned());
        request.max_devices = Some(forms::count("Max devices", &self.max_devices)?);
        request.duration = Some(forms::optional(&self.duration));
        request.trial_duration = Some(forms::optional(&self.trial_duration));
        request.expiration_basis = Some(self.basis()?);
        request.expiration_strategy = Some(self.strategy()?);
        request.grace_period = Some(forms::optional(&self.grace_period));
        request.token_ttl = Some(forms::optional(&self.token_ttl));
        request.entitlements = Some(self.entitlements.clone());
        let (beats, duration, cull) = self.heartbeats()?;
        request.license_model = Some(self.model()?);
        request.require_heartbeat = Some(beats);
        request.heartbeat_duration = Some(duration);
        request.heartbeat_cull = Some(cull.unwrap_or(Cull::Deactivate));
        request.resurrection_window = Some(forms::optional(&self.resurrection_window));
        request.max_deactivations = Some(self.max_deactivations()?);
        request.deactivation_window = Some(forms::optional(&self.deactivation_window));
        request.max_borrow = Some(forms::optional(&self.max_borrow));
        Ok(request)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/new_policy.html")]
pub struct NewPage {
    layout: Layout,
    form: PolicyForm,
    products: Vec<ProductRecord>,
    choices: Vec<Choice>,
    error: Option<String>,
}

async fn new_page(
    app: &App,
    session: &BrowserSession,
    form: PolicyForm,
    error: Option<String>,
) -> Result<NewPage, PanelError> {
    let (products, _) = read::catalogue::products(&app.db, &all()).await?;
    let (entitlements, _) = read::catalogue::entitlements(&app.db, &all()).await?;
    Ok(NewPage {
        layout: Layout::signed_in(app, session, "policies").await,
        choices: form.choices(&entitlements),
        form,
        products,
        error,
    })
}

#[derive(Deserialize, Default)]
pub struct NewQuery {
    /// The product chosen beforehand, by code.
    #[serde(default)]
    product: String,
}

pub async fn new_form(
    State(app): State<SharedApp>,
    Writer(session): Writer,
    PageQuery(query): PageQuery<NewQuery>,
) -> Result<NewPage, PanelError> {
    let mut page = new_page(&app, &session, PolicyForm::default(), None).await?;
    if let Some(product) = page.products.iter().find(|p| p.code == query.product) {
        page.form.product = product.id.to_string();
    }
    page.form.max_devices = "1".into();
    Ok(page)
}

pub async fn create(
    State(app): State<SharedApp>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<PolicyForm>,
) -> Result<Response, PanelError> {
    let refused = match fields.create_request() {
        Ok(request) => {
            let metadata = context.metadata(session.admin.admin_id.to_string());
            match app.catalogue.create_policy(request, metadata).await {
                Ok(committed) => {
                    let to = format!("/admin/policies?min_position={}", committed.position);
                    return Ok(Redirect::to(&to).into_response());
                }
                Err(error) => refusal(error)?,
            }
        }
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let (status, message) = refused;
    let page = new_page(&app, &session, fields, Some(message)).await?;
    Ok((status, page).into_response())
}
