//! `/admin/entitlements`: the features policies pick from. One page: the list (with the
//! policies naming each), the form that adds one, a rename form per row, and deletion
//! behind a confirmation step (refused while a policy or a live subscription names it).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use flowlytix_aggregates::EntitlementId;
use serde::Deserialize;
use uuid::Uuid;

use super::catalogue::{refusal, ConfirmPage};
use super::error::PanelError;
use super::forms::PageQuery;
use super::layout::Layout;
use super::login::NoFields;
use super::products::{all, ListQuery};
use super::session::{Reader, WriteForm, Writer};
use crate::app::SharedApp;
use crate::auth::browser_sessions::BrowserSession;
use crate::catalogue::{CreateEntitlementRequest, UpdateEntitlementRequest};
use crate::http::extract::RequestContext;
use crate::read;
use crate::read::consistency::wait_for_position;

pub struct Row {
    pub id: String,
    pub code: String,
    pub name: String,
    /// The policies naming it, as `<product>/<policy>`.
    pub policies: String,
}

/// The add form as typed (the rename form sends only a name).
#[derive(Deserialize, Default)]
pub struct EntitlementForm {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/entitlements.html")]
pub struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    total: i64,
    consistent: bool,
    form: EntitlementForm,
    error: Option<String>,
}

async fn render(
    app: &SharedApp,
    session: &BrowserSession,
    min_position: Option<i64>,
    form: EntitlementForm,
    error: Option<String>,
) -> Result<ListPage, PanelError> {
    let consistent = wait_for_position(&app.db, "catalogue", min_position).await?;
    let (entitlements, total) = read::catalogue::entitlements(&app.db, &all()).await?;
    let book = app.policies.book();
    let rows = entitlements
        .into_iter()
        .map(|row| Row {
            policies: book
                .iter()
                .filter(|terms| {
                    terms
                        .settings
                        .entitlements
                        .iter()
                        .any(|c| c.as_str() == row.code)
                })
                .map(|terms| format!("{}/{}", terms.product_code, terms.code))
                .collect::<Vec<_>>()
                .join(", "),
            id: row.id.to_string(),
            code: row.code,
            name: row.name,
        })
        .collect();
    Ok(ListPage {
        layout: Layout::signed_in(app, session, "products").await,
        rows,
        total,
        consistent,
        form,
        error,
    })
}

pub async fn list(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<ListPage, PanelError> {
    render(
        &app,
        &session,
        query.min_position,
        EntitlementForm::default(),
        None,
    )
    .await
}

/// The page again with the refusal above it (and the add form as typed).
async fn refused(
    app: &SharedApp,
    session: &BrowserSession,
    form: EntitlementForm,
    status: StatusCode,
    message: String,
) -> Result<Response, PanelError> {
    let page = render(app, session, None, form, Some(message)).await?;
    Ok((status, page).into_response())
}

fn to_list(position: i64) -> Response {
    Redirect::to(&format!("/admin/entitlements?min_position={position}")).into_response()
}

pub async fn create(
    State(app): State<SharedApp>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<EntitlementForm>,
) -> Result<Response, PanelError> {
    let request = CreateEntitlementRequest {
        code: fields.code.trim().to_owned(),
        name: fields.name.trim().to_owned(),
    };
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app.catalogue.create_entitlement(request, metadata).await {
        Ok(committed) => Ok(to_list(committed.position)),
        Err(error) => {
            let (status, message) = refusal(error)?;
            refused(&app, &session, fields, status, message).await
        }
    }
}

pub async fn rename(
    State(app): State<SharedApp>,
    Path(id): Path<Uuid>,
    context: RequestContext,
    WriteForm { session, fields }: WriteForm<EntitlementForm>,
) -> Result<Response, PanelError> {
    let request = UpdateEntitlementRequest {
        name: fields.name.trim().to_owned(),
    };
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app
        .catalogue
        .update_entitlement(EntitlementId(id), request, metadata)
        .await
    {
        Ok(committed) => Ok(to_list(committed.position)),
        Err(error) => {
            let (status, message) = refusal(error)?;
            let message = format!("Renaming: {message}");
            refused(&app, &session, EntitlementForm::default(), status, message).await
        }
    }
}

pub async fn confirm_delete(
    State(app): State<SharedApp>,
    Writer(session): Writer,
    Path(id): Path<Uuid>,
) -> Result<ConfirmPage, PanelError> {
    let (entitlement, _) = app.catalogue.entitlement(EntitlementId(id)).await?;
    let state = entitlement
        .live()
        .ok_or_else(|| PanelError::NotFound("No such entitlement.".into()))?;
    Ok(ConfirmPage {
        layout: Layout::signed_in(&app, &session, "products").await,
        question: "Delete this entitlement? Only one that no policy and no live subscription names can be deleted; its history stays and its code may be used again.",
        subject: format!("Entitlement {} ({})", state.name, state.code),
        action: format!("/admin/entitlements/{id}/delete"),
        back: "/admin/entitlements".into(),
    })
}

pub async fn delete(
    State(app): State<SharedApp>,
    Path(id): Path<Uuid>,
    context: RequestContext,
    WriteForm { session, .. }: WriteForm<NoFields>,
) -> Result<Response, PanelError> {
    let metadata = context.metadata(session.admin.admin_id.to_string());
    match app
        .catalogue
        .delete_entitlement(EntitlementId(id), metadata)
        .await
    {
        Ok(committed) => Ok(to_list(committed.position)),
        Err(error) => {
            let (status, message) = refusal(error)?;
            refused(&app, &session, EntitlementForm::default(), status, message).await
        }
    }
}
