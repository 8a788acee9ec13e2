//! `/admin/subscriptions/export.csv`: the list's current filter as CSV, safe to open in a
//! spreadsheet.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::PanelError;
use super::forms::PageQuery;
use super::session::Reader;
use super::subscriptions::ListQuery;
use crate::app::SharedApp;
use crate::read;

/// The most rows one CSV export holds.
const EXPORT_LIMIT: u32 = 10_000;

/// The current filter as CSV, every page of it (up to [`EXPORT_LIMIT`] rows).
pub async fn export_csv(
    State(app): State<SharedApp>,
    Reader(_session): Reader,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<Response, PanelError> {
    let per_page = read::MAX_PER_PAGE;
    let mut out = String::from(
        "id,customer_email,customer_name,organization,plan,status,max_devices,active_devices,\
         features,starts_at,expires_at,trial_ends_at,license_key_prefix,created_at,updated_at\r\n",
    );
    for page in 1..=EXPORT_LIMIT / per_page {
        let (rows, total) =
            read::subscriptions::list(&app.db, &query.filter(page, per_page)).await?;
        for row in &rows {
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            };
            let cells = [
                row.id.to_string(),
                row.customer_email.clone(),
                row.customer_name.clone(),
                row.organization.clone().unwrap_or_default(),
                row.plan.clone(),
                row.status.clone(),
                row.max_devices.to_string(),
                row.active_devices.to_string(),
                row.features.0.join(" "),
                time(Some(row.starts_at)),
                time(row.expires_at),
                time(row.trial_ends_at),
                row.license_key_prefix.clone().unwrap_or_default(),
                time(Some(row.created_at)),
                time(Some(row.updated_at)),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        if i64::from(page) * i64::from(per_page) >= total {
            break;
        }
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"subscriptions.csv\""),
            ),
        ],
        out,
    )
        .into_response())
}

/// One CSV cell. A cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return) gets a leading `'`, so it stays text; then RFC 4180
/// quoting.
pub fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_stay_text() {
        assert_eq!(csv_cell("=1+2"), "'=1+2");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("plain"), "plain");
    }

    #[test]
    fn cells_with_separators_are_quoted() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_cell("=HYPERLINK(\"x\",1)"),
            "\"'=HYPERLINK(\"\"x\"\",1)\""
        );
    }
}
