//! `/admin/products/{id}`: one product from its events, the policies that name it, its
//! edit form (name and URL; the code never changes) and its deletion behind a
//! confirmation step (refused while a policy names it).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use flowlytix_aggregates::product::ProductState;
use flowlytix_aggregates::ProductId;
use uuid::Uuid;

use super::catalogue::{moment, refusal, ConfirmPage};
use super::error::PanelError;
use super::forms;
use super::layout::Layout;
use super::login::NoFields;
use super::products::ProductForm;
use super::session::{Reader, WriteForm, Writer};
use crate::app::SharedApp;
use crate::auth::browser_sessions::BrowserSession;
use crate::catalogue::UpdateProductRequest;
use crate::http::extract::RequestContext;

/// A policy that names the product, as linked from its page.
pub struct PolicyLink {
    pub id: String,
    pub code: String,
    pub name: String,
    pub archived: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/product.html")]
pub struct DetailPage {
    layout: Layout,
    id: String,
    product: ProductState,
    created_at: String,
    updated_at: String,
    version: u64,
    policies: Vec<PolicyLink>,
    form: ProductForm,
    error: Option<String>,
}

async fn load(app: &SharedApp, id: Uuid) -> Result<(ProductState, u64), PanelError> {
    let (product, version) = app.catalogue.product(ProductId(id)).await?;
    let state = product
        .live()
        .cloned()
        .ok_or_else(|| PanelError::NotFound("No such product.".into()))?;
    Ok((state, version))
}

async fn render(
    app: &SharedApp,
    session: &BrowserSession,
    id: Uuid,
    typed: Option<ProductForm>,
    error: Option<String>,
) -> Result<DetailPage, PanelError> {
    let (product, version) = load(app, id).await?;
    let policies = app
        .policies
        .book()
        .iter()
        .filter(|terms| terms.product_id == product.id)
        .map(|terms| PolicyLink {
            id: terms.policy_id.as_uuid().to_string(),
            code: terms.code.to_string(),
            name: terms.settings.name.clone(),
            archived: terms.archived,
        })
        .collect();
    Ok(DetailPage {
        layout: Layout::signed_in(app, session, "products").await,
        id: id.to_string(),
        created_at: moment(product.created_at),
        updated_at: moment(product.updated_at),
        version,
        policies,
        form: typed.unwrap_or_else(|| ProductForm {
            name: product.name.clone(),
            code: product.code.to_string(),
            url: product.url.clone().unwrap_or_default(),
        }),
        error,
        product,
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
    WriteForm { session, fields }: WriteForm<ProductForm>,
) -> Result<Response, PanelError> {
    let request = UpdateProductRequest {
        name: Some(fields.name.trim().to_owned()),
        url: Some(forms::optional(&fields.url)),
        metadata: None,
    };
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app
        .catalogue
        .update_product(ProductId(id), request, metadata)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/admin/products/{id}")).into_response()),
        Err(error) => {
            let (status, message) = refusal(error)?;
            let page = render(&app, &session, id, Some(fields), Some(message)).await?;
            Ok((status, page).into_response())
        }
    }
}

pub async fn confirm_delete(
    State(app): State<SharedApp>,
    Writer(session): Writer,
    Path(id): Path<Uuid>,
) -> Result<ConfirmPage, PanelError> {
    let (product, _) = load(&app, id).await?;
    Ok(ConfirmPage {
        layout: Layout::signed_in(&app, &session, "products").await,
        question: "Delete this product? Only a product no policy names can be deleted; its history stays and its code may be used again.",
        subject: format!("Product {} ({})", product.name, product.code),
        action: format!("/admin/products/{id}/delete"),
        back: format!("/admin/products/{id}"),
    })
}

pub async fn delete(
    State(app): State<SharedApp>,
    Path(id): Path<Uuid>,
    context: RequestContext,
    WriteForm { session, .. }: WriteForm<NoFields>,
) -> Result<Response, PanelError> {
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app.catalogue.delete_product(ProductId(id), metadata).await {
        Ok(committed) => {
            // The list waits until it no longer shows it.
            let to = format!("/admin/products?min_position={}", committed.position);
            Ok(Redirect::to(&to).into_response())
        }
        Err(error) => {
            let (status, message) = refusal(error)?;
            let page = render(&app, &session, id, None, Some(message)).await?;
            Ok((status, page).into_response())
        }
    }
}
