//! Bulk loading on PostgreSQL: `COPY … FROM STDIN` in its text format, for a replay's
//! fresh tables (a multi-row insert costs the server a parse, a plan and a bind per
//! statement; a copy streams rows straight into the table).
//!
//! Each value is written as PostgreSQL's input function for its column reads it, in the
//! same form sqlx's binding gives: timestamps to the microsecond (truncated, as sqlx
//! truncates), JSON as serde writes it.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// Buffered rows are sent once they reach this size.
const SEND_AT: usize = 1 << 20;

/// One `COPY table (columns) FROM STDIN` in progress.
pub struct CopyIn<'c> {
    copy: sqlx::postgres::PgCopyIn<&'c mut PgConnection>,
    buffer: Vec<u8>,
    /// Whether the row being written has a field yet (fields are tab-separated).
    row_started: bool,
    rows: u64,
}

impl<'c> CopyIn<'c> {
    pub async fn start(
        conn: &'c mut PgConnection,
        table: &str,
        columns: &str,
    ) -> Result<Self, sqlx::Error> {
        let copy = conn
            .copy_in_raw(&format!("copy {table} ({columns}) from stdin"))
            .await?;
        Ok(Self {
            copy,
            buffer: Vec::with_capacity(SEND_AT + SEND_AT / 4),
            row_started: false,
            rows: 0,
        })
    }

    pub fn field(&mut self, value: impl CopyValue) -> &mut Self {
        if self.row_started {
            self.buffer.push(b'\t');
        }
        self.row_started = true;
        value.write(&mut self.buffer);
        self
    }

    /// Ends the row, sending the buffer when it is full.
    pub async fn end_row(&mut self) -> Result<(), sqlx::Error> {
        self.buffer.push(b'\n');
        self.row_started = false;
        self.rows += 1;
        if self.buffer.len() >= SEND_AT {
            self.copy.send(std::mem::take(&mut self.buffer)).await?;
            self.buffer.reserve(SEND_AT + SEND_AT / 4);
        }
        Ok(())
    }

    /// Sends what is left and ends the copy; the rows copied.
    pub async fn finish(mut self) -> Result<u64, sqlx::Error> {
        if !self.buffer.is_empty() {
            self.copy.send(std::mem::take(&mut self.buffer)).await?;
        }
        let copied = self.copy.finish().await?;
        debug_assert_eq!(copied, self.rows);
        Ok(copied)
    }
}

/// A value in COPY's text format.
pub trait CopyValue {
    fn write(&self, out: &mut Vec<u8>);
}

/// Text with COPY's escapes: a backslash, and the characters that separate fields and rows.
fn write_escaped(text: &str, out: &mut Vec<u8>) {
    for &byte in text.as_bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(byte),
        }
    }
}

impl CopyValue for str {
    fn write(&self, out: &mut Vec<u8>) {
        write_escaped(self, out);
    }
}

impl CopyValue for String {
    fn write(&self, out: &mut Vec<u8>) {
        write_escaped(self, out);
    }
}

impl<T: CopyValue + ?Sized> CopyValue for &T {
    fn write(&self, out: &mut Vec<u8>) {
        (**self).write(out);
    }
}

impl<T: CopyValue> CopyValue for Option<T> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => value.write(out),
            None => out.extend_from_slice(b"\\N"),
        }
    }
}

/// Values whose text has nothing to escape.
macro_rules! plain_copy_value {
    ($($t:ty),*) => {$(
        impl CopyValue for $t {
            fn write(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

plain_copy_value!(i32, i64, bool, Uuid);

impl CopyValue for DateTime<Utc> {
    fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "{}", self.format("%Y-%m-%d %H:%M:%S%.6f+00"));
    }
}

impl CopyValue for NaiveDate {
    fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "{}", self.format("%Y-%m-%d"));
    }
}

impl<T: Serialize> CopyValue for Json<T> {
    fn write(&self, out: &mut Vec<u8>) {
        // serde's JSON has no raw tab or line break (it escapes them inside strings), but
        // its own escapes are backslashes, which COPY would read as its escapes.
        match serde_json::to_string(&self.0) {
            Ok(text) => write_escaped(&text, out),
            Err(_) => out.extend_from_slice(b"null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: impl CopyValue) -> String {
        let mut out = Vec::new();
        value.write(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn escapes_what_copy_reads_as_separators() {
        assert_eq!(text("a\tb\nc\rd\\e"), "a\\tb\\nc\\rd\\\\e");
        assert_eq!(text(None::<String>), "\\N");
        assert_eq!(text(Some("\\N")), "\\\\N");
        assert_eq!(
            text(Json(serde_json::json!({"q": "say \"hi\"\n"}))),
            r#"{"q":"say \\"hi\\"\\n"}"#
        );
    }

    #[test]
    fn timestamps_keep_microseconds_truncated() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T01:02:03.123456789Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(text(at), "2026-12-02 01:02:03.123456+00");
    }
}
