//! `/admin/products`: the list (with how many policies name each product) and the
//! new-product form. One product's page, its edit form and its deletion are in
//! `product_detail`.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::catalogue::refusal;
use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::{Reader, WriteForm, Writer};
use crate::app::SharedApp;
use crate::catalogue::CreateProductRequest;
use crate::http::extract::RequestContext;
use crate::read::consistency::wait_for_position;
use crate::read::{self, Paging};

/// Every product on one page: a vendor has a handful.
pub const PER_PAGE: u32 = 200;

pub fn all() -> Paging {
    Paging {
        page: Some(1),
        per_page: Some(PER_PAGE),
    }
}

pub struct Row {
    pub id: String,
    pub code: String,
    pub name: String,
    pub url: String,
    pub policies: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/products.html")]
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
    let consistent = wait_for_position(&app.db, "catalogue", query.min_position).await?;
    let (products, total) = read::catalogue::products(&app.db, &all()).await?;
    let book = app.policies.book();
    let rows = products
        .into_iter()
        .map(|product| Row {
            policies: book
                .iter()
                .filter(|terms| terms.product_id.as_uuid() == product.id)
                .count(),
            id: product.id.to_string(),
            code: product.code,
            name: product.name,
            url: product.url.unwrap_or_default(),
        })
        .collect();
    Ok(ListPage {
        layout: Layout::signed_in(&app, &session, "products").await,
        rows,
        total,
        consistent,
    })
}

/// The product form as typed (the edit form uses its name and URL).
#[derive(Deserialize, Default)]
pub struct ProductForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub url: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/new_product.html")]
pub struct NewPage {
    layout: Layout,
    form: ProductForm,
    error: Option<String>,
}

pub async fn new_form(
    State(app): State<SharedApp>,
    Writer(session): Writer,
) -> Result<NewPage, PanelError> {
    Ok(NewPage {
        layout: Layout::signed_in(&app, &session, "products").await,
        form: ProductForm::default(),
        error: None,
    })
}

pub async fn create(
    State(app): State<SharedApp>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<ProductForm>,
) -> Result<Response, PanelError> {
    let request = CreateProductRequest {
        name: fields.name.trim().to_owned(),
        code: fields.code.trim().to_owned(),
        url: forms::optional(&fields.url),
        metadata: None,
    };
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app.catalogue.create_product(request, metadata).await {
        Ok(committed) => {
            let to = format!("/admin/products?min_position={}", committed.position);
            Ok(Redirect::to(&to).into_response())
        }
        Err(error) => {
            let (status, message) = refusal(error)?;
            let page = NewPage {
                layout: Layout::signed_in(&app, &session, "products").await,
                form: fields,
                error: Some(message),
            };
            Ok((status, page).into_response())
        }
    }
}
