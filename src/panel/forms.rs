//! Reading what people type into panel forms: instants, lists, numbers. Every field
//! arrives as text so that a form with a mistake can be shown again exactly as typed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::PanelError;
use crate::http::extract::ApiQuery;

/// A page's query string, read by the JSON API's own extractor (so the panel refuses what
/// the API refuses, with the same status) and refused as a page rather than as JSON.
pub struct PageQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PanelError> {
        let ApiQuery(query) = ApiQuery::from_request_parts(parts, state)
            .await
            .map_err(PanelError::Api)?;
        Ok(Self(query))
    }
}

/// An instant as people type it: RFC 3339 (`2027-01-31T12:00:00Z`), a date and time taken
/// as UTC (`2027-01-31T12:00`, `2027-01-31 12:00:00`), or a day (midnight UTC). Empty is
/// none.
pub fn instant(field: &str, text: &str) -> Result<Option<DateTime<Utc>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(instant.with_timezone(&Utc)));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(naive.and_utc()));
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
    }
    Err(format!(
        "{field}: write a date and time in UTC, e.g. 2027-01-31 or 2027-01-31T12:00:00Z"
    ))
}

/// How an instant is shown in a form field, so that saving it unchanged changes nothing.
pub fn instant_field(instant: Option<DateTime<Utc>>) -> String {
    instant
        .map(|i| i.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// `a, b ,c` → `[a, b, c]`; empty items are dropped.
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn count(field: &str, text: &str) -> Result<u32, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{field}: a whole number, 0 or more"))
}

/// Empty text is none.
pub fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A field sent once is a string, sent more than once a list (see `form_fields`).
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_read_in_the_forms_people_type() {
        let noon = "2027-01-31T12:00:00Z".parse::<DateTime<Utc>>().ok();
        assert_eq!(instant("x", "2027-01-31T12:00:00Z"), Ok(noon));
        assert_eq!(instant("x", "2027-01-31T12:00"), Ok(noon));
        assert_eq!(instant("x", " 2027-01-31 12:00:00 "), Ok(noon));
        assert_eq!(instant("x", "2027-01-31T13:00:00+01:00"), Ok(noon));
        assert!(instant("x", "2027-01-31").is_ok_and(|i| i.is_some()));
        assert_eq!(instant("x", ""), Ok(None));
        assert!(instant("Expires at", "tomorrow").is_err_and(|e| e.starts_with("Expires at")));
    }

    #[test]
    fn a_shown_instant_reads_back_as_itself() {
        let now = Utc::now();
        assert_eq!(instant("x", &instant_field(Some(now))), Ok(Some(now)));
    }

    #[test]
    fn lists_drop_blanks_and_spaces() {
        assert_eq!(list(" sync, export ,, "), vec!["sync", "export"]);
        assert!(list("").is_empty());
    }
}

/// `?action=` of a confirmation page (subscriptions' and webhooks' alike); each page parses
/// it into its own actions.
#[derive(serde::Deserialize)]
pub struct ConfirmQuery {
    #[serde(default)]
    pub action: String,
}
