//! What the catalogue pages (products, entitlements, policies) share: the confirmation
//! step, how a refusal is shown next to its form, and how instants and durations read.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::IsoDuration;

use super::error::PanelError;
use super::layout::Layout;

/// A confirmation step: the question, what it is about, where `Confirm` posts and where
/// `Back` leads.
#[derive(Template, WebTemplate)]
#[template(path = "panel/catalogue_confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub question: &'static str,
    pub subject: String,
    pub action: String,
    pub back: String,
}

/// A refused write as shown beside its form: the status and the sentence. What is no
/// refusal of the input (a server failure, a vanished item) stays an error page.
pub fn refusal(error: impl Into<PanelError>) -> Result<(StatusCode, String), PanelError> {
    let error = error.into();
    let (status, message) = error.message();
    if status.is_server_error() || status == StatusCode::NOT_FOUND {
        return Err(error);
    }
    Ok((status, message))
}

pub fn moment(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration as shown in a list: its ISO 8601 text, or what none means there.
pub fn duration(duration: Option<&IsoDuration>, none: &str) -> String {
    duration.map_or_else(|| none.to_owned(), |d| d.as_str().to_owned())
}
