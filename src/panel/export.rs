//! `/admin/subscriptions/export.csv`: the list's current filter as CSV, safe to open in a
//! spreadsheet.

use std::borrow::Cow;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::error::PanelError;
use super::forms::PageQuery;
use super::session::Reader;
use super::subscriptions::ListQuery;
use crate::app::SharedApp;
use crate::http::error::ApiError;
use crate::read;

/// The most rows one CSV export holds.
const EXPORT_LIMIT: u32 = 10_000;

const HEADER: [&str; 16] = [
    "id",
    "customer_email",
    "customer_name",
    "organization",
    "plan",
    "status",
    "max_devices",
    "active_devices",
    "features",
    "starts_at",
    "expires_at",
    "trial_ends_at",
    "license_key_prefix",
    "created_at",
    "updated_at",
    "metadata",
];

/// The current filter as CSV, every page of it (up to [`EXPORT_LIMIT`] rows).
pub async fn export_csv(
    State(app): State<SharedApp>,
    Reader(_session): Reader,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<Response, PanelError> {
    let per_page = read::MAX_PER_PAGE;
    let mut out = spreadsheet_writer();
    write_row(&mut out, HEADER)?;
    for page in 1..=EXPORT_LIMIT / per_page {
        let (rows, total) =
            read::subscriptions::list(&app.db, &query.filter(page, per_page), &app.policies.book())
                .await?;
        for row in &rows {
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            };
            write_row(
                &mut out,
                [
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
                    // Compact JSON: one cell, defused like every other.
                    serde_json::to_string(&row.metadata.0).unwrap_or_default(),
                ],
            )?;
        }
        if i64::from(page) * i64::from(per_page) >= total {
            break;
        }
    }
    let body = out
        .into_inner()
        .map_err(|e| PanelError::Api(ApiError::internal(format!("csv export: {}", e.error()))))?;
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
        body,
    )
        .into_response())
}

/// RFC 4180 with every cell quoted, whatever it holds: separators, quotes and line breaks
/// stay inside their cell (what a `;`-splitting spreadsheet makes of a `;` is [`defused`]'s
/// part).
fn spreadsheet_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

fn write_row<I, T>(out: &mut csv::Writer<Vec<u8>>, cells: I) -> Result<(), PanelError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    let cells: Vec<String> = cells
        .into_iter()
        .map(|cell| defused(cell.as_ref()).into_owned())
        .collect();
    out.write_record(&cells)
        .map_err(|e| PanelError::Api(ApiError::internal(format!("csv export: {e}"))))
}

/// What starts a formula in a spreadsheet, in ASCII and in full width (which spreadsheets
/// in East Asian locales read as the same).
const FORMULA_STARTS: [char; 8] = ['=', '+', '-', '@', '＝', '＋', '－', '＠'];

/// Where a spreadsheet may start a cell inside one of ours. Our quotes only count at the
/// start of a cell, and a spreadsheet that splits on `;` (most of Europe) sees a cell start
/// after every `;` of ours, past the first cell; one that does not honour the quotes sees a
/// row, and so a cell, start after every line break.
const CELL_BREAKS: [char; 3] = [';', '\r', '\n'];

/// The cell as text a spreadsheet keeps as text: wherever a cell may start in it (its
/// start, and after each of [`CELL_BREAKS`]) and would start a formula, a `'` goes first:
/// `x;=cmd` becomes `x;'=cmd`. Spreadsheets skip leading blanks and invisible characters
/// before they look for a formula, so the guard looks past them too.
pub fn defused(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut guarded = false;
    let mut rest = text;
    loop {
        if starts_formula(rest) {
            out.push('\'');
            guarded = true;
        }
        match rest.find(CELL_BREAKS) {
            // The breaks are ASCII: one byte each.
            Some(at) => {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    if guarded {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether a spreadsheet would read text beginning with `part` as a formula. A part that
/// starts with a tab or CR is guarded whatever follows, as OWASP advises.
fn starts_formula(part: &str) -> bool {
    part.starts_with(['\t', '\r'])
        || first_visible(part).is_some_and(|c| FORMULA_STARTS.contains(&c))
}

/// The first character a spreadsheet looks at: past Unicode whitespace (spaces, no-break
/// spaces, tab, CR, LF), format characters (zero-width space and joiners, bidi marks, the
/// byte-order mark) and the quotes of a part that a `;`-splitting spreadsheet reads as a
/// quoted cell.
fn first_visible(part: &str) -> Option<char> {
    part.chars().find(|c| {
        !(c.is_whitespace() || *c == '"' || c.general_category() == GeneralCategory::Format)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line(cells: &[&str]) -> String {
        let mut out = spreadsheet_writer();
        write_row(&mut out, cells).unwrap();
        String::from_utf8(out.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn cells_a_spreadsheet_would_run_stay_text() {
        for cell in [
            "=1+2",
            "+1",
            "-1",
            "@SUM(A1)",
            " =1+2",
            "   @SUM(A1)",
            "\u{a0}=1+2",
            "\u{202f}+1",
            "\u{200b}=1+2",
            "\u{200d}\u{feff}-1",
            "\u{200e}@x",
            "\t=1+2",
            "＝1+2",
            "＋1",
            "－1",
            "＠SUM(A1)",
            " \u{3000}＝1",
            "\tplain",
        ] {
            assert_eq!(defused(cell), format!("'{cell}"), "{cell:?}");
        }
    }

    #[test]
    fn ordinary_cells_are_left_as_they_are() {
        for cell in ["plain", "Ann O'Neil", "a=b", "a;b", "", " ", "1-2", "x; y"] {
            assert_eq!(defused(cell), cell, "{cell:?}");
        }
    }

    #[test]
    fn every_place_a_cell_may_start_is_guarded() {
        assert_eq!(defused("x;=cmd|' /C calc'!A0"), "x;'=cmd|' /C calc'!A0");
        assert_eq!(defused("a; \u{a0}+1;b"), "a;' \u{a0}+1;b");
        assert_eq!(defused("a;\"=1\""), "a;'\"=1\"");
        assert_eq!(defused("=1;＠x"), "'=1;'＠x");
        assert_eq!(defused("a\n=1"), "a\n'=1");
        assert_eq!(defused("\r=1"), "'\r'=1");
        assert_eq!(defused("\r\n=1"), "'\r'\n'=1");
        assert_eq!(defused("a\r\nb"), "a\r\nb");
    }

    #[test]
    fn every_cell_is_quoted() {
        assert_eq!(line(&["a", "", "b c"]), "\"a\",\"\",\"b c\"\r\n");
        assert_eq!(
            line(&["x;=cmd|' /C calc'!A0", "a,b"]),
            "\"x;'=cmd|' /C calc'!A0\",\"a,b\"\r\n"
        );
        assert_eq!(
            line(&["=HYPERLINK(\"x\",1)"]),
            "\"'=HYPERLINK(\"\"x\"\",1)\"\r\n"
        );
    }

    /// Read back as a semicolon-locale spreadsheet splits it (rows broken where our quotes
    /// are not honoured): no cell starts a formula.
    #[test]
    fn a_semicolon_reader_finds_no_formula() {
        let text = line(&[
            "x;=cmd|' /C calc'!A0",
            "a;+1",
            "\u{a0}=1",
            "b; \"@x\"",
            "c\r\n-1",
        ]);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b';')
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                assert!(
                    !first_visible(cell).is_some_and(|c| FORMULA_STARTS.contains(&c)),
                    "{cell:?} in {text:?}"
                );
            }
        }
    }
}
