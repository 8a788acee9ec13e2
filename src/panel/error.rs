//! How a panel request fails: signed out → the sign-in page; anything else an HTML page
//! with the status and a sentence for a person. Internal causes are logged, never shown.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::layout::Layout;
use crate::catalogue::CatalogueFailure;
use crate::http::error::ApiError;
use crate::subscriptions::ManageError;
use crate::webhooks::WebhookError;

#[derive(Debug)]
pub enum PanelError {
    /// No open session: go and sign in.
    SignIn,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    /// What the application layer refused or failed, as the JSON API would answer it.
    Api(ApiError),
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/error.html")]
struct ErrorPage {
    layout: Layout,
    title: String,
    message: String,
}

impl PanelError {
    /// The status and the sentence a user sees for a refused write, shown next to its form.
    pub fn message(&self) -> (StatusCode, String) {
        match self {
            Self::SignIn => (StatusCode::UNAUTHORIZED, "Sign in first.".into()),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::Api(e) => (e.status, capitalized(&e.detail)),
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl IntoResponse for PanelError {
    fn into_response(self) -> Response {
        if let Self::SignIn = self {
            return Redirect::to("/admin/login").into_response();
        }
        if let Self::Api(error) = self {
            if error.status.is_server_error() {
                // The JSON rendering logs the internal cause; the person sees a sentence.
                let status = error.status;
                drop(error.into_response());
                let page = ErrorPage {
                    layout: Layout::bare(),
                    title: "Something went wrong".into(),
                    message: "The server could not complete the request; it has been logged. Try again shortly.".into(),
                };
                return (status, page).into_response();
            }
            return Self::Api(error).page();
        }
        self.page()
    }
}

impl PanelError {
    fn page(self) -> Response {
        let (status, message) = self.message();
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        (
            status,
            ErrorPage {
                layout: Layout::bare(),
                title,
                message,
            },
        )
            .into_response()
    }
}

impl From<ManageError> for PanelError {
    fn from(error: ManageError) -> Self {
        Self::Api(error.into())
    }
}

impl From<CatalogueFailure> for PanelError {
    fn from(error: CatalogueFailure) -> Self {
        Self::Api(error.into())
    }
}

impl From<WebhookError> for PanelError {
    fn from(error: WebhookError) -> Self {
        Self::Api(error.into())
    }
}

impl From<sqlx::Error> for PanelError {
    fn from(error: sqlx::Error) -> Self {
        Self::Api(error.into())
    }
}

impl From<askama::Error> for PanelError {
    fn from(error: askama::Error) -> Self {
        Self::Api(ApiError::internal(format!("template: {error}")))
    }
}
