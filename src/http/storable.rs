//! What a request may carry so that both event stores keep it exactly: checked once, at the
//! door, on the parsed JSON of every body and on every query string, before any typed
//! deserialization. A value that one store would change, refuse or lose (PostgreSQL's
//! `json` columns go through `jsonb`, whose numbers are `numeric` and whose strings cannot
//! hold NUL; SQLite keeps the text as sent) is refused, so both backends behave alike and
//! no event is ever written that cannot be read back.

use serde_json::{Number, Value};

/// Deepest nesting of arrays and objects in a body (the top-level object counts as 1), so
/// `metadata` may nest 8 levels below itself.
pub const MAX_DEPTH: usize = 10;
/// Largest magnitude of a number with a fraction or an exponent. Beyond it PostgreSQL
/// writes a float back as a long integer, which serde_json reads as another type (or not
/// at all, from 1.8e308).
pub const MAX_DECIMAL: f64 = 1e15;

/// Why a value cannot be stored as sent; `path` is where, e.g. `metadata.a[2]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unstorable {
    #[error("{path}: text must not contain the NUL character (U+0000)")]
    Nul { path: String },
    #[error("{path}: numbers must be 64-bit integers or decimals strictly between -1e15 and 1e15")]
    Number { path: String },
    #[error("the body nests arrays and objects deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Checks every key, string and number of a parsed body.
pub fn check_value(value: &Value) -> Result<(), Unstorable> {
    walk(value, &mut String::new(), 1)
}

fn walk(value: &Value, path: &mut String, depth: usize) -> Result<(), Unstorable> {
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(number) if number_round_trips(number) => Ok(()),
        Value::Number(_) => Err(Unstorable::Number { path: shown(path) }),
        Value::String(text) => check_text(text).map_err(|_| Unstorable::Nul { path: shown(path) }),
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return Err(Unstorable::TooDeep);
            }
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(fields) => {
            if depth > MAX_DEPTH {
                return Err(Unstorable::TooDeep);
            }
            for (key, item) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                // A bad key is named by the escaped form, so the detail stays printable.
                path.push_str(&key.escape_debug().to_string());
                check_text(key).map_err(|_| Unstorable::Nul { path: shown(path) })?;
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the body".into()
    } else {
        path.to_owned()
    }
}

/// PostgreSQL's `text` and `jsonb` hold any Unicode scalar value but U+0000.
pub fn check_text(text: &str) -> Result<(), Unstorable> {
    if text.contains('\0') {
        Err(Unstorable::Nul {
            path: String::new(),
        })
    } else {
        Ok(())
    }
}

/// Whether PostgreSQL (through `numeric`) and SQLite (the text as serde_json wrote it) both
/// give back this very number when serde_json reads it again.
fn number_round_trips(number: &Number) -> bool {
    if number.is_i64() || number.is_u64() {
        return true;
    }
    let Some(value) = number.as_f64() else {
        return false;
    };
    // (-0.0 comes back from PostgreSQL as 0.0: the same number, as JSON compares them.)
    if !(value.is_finite() && value.abs() < MAX_DECIMAL) {
        return false;
    }
    // What PostgreSQL would print, read back: the same decimal without an exponent.
    let written = number.to_string();
    let Some(plain) = without_exponent(&written) else {
        return false;
    };
    serde_json::from_str::<Value>(&plain).ok() == Some(Value::Number(number.clone()))
}

/// `1.5e-7` → `0.00000015`, `2.5e3` → `2500.0`: how `numeric` prints a decimal (it keeps
/// the fraction digits the input had, less the exponent, so a float stays a float here).
fn without_exponent(text: &str) -> Option<String> {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    // The decimal point sits after `point` digits of `digits`.
    let point = i64::try_from(whole.len()).ok()? + i64::from(exponent);
    let len = i64::try_from(digits.len()).ok()?;
    let (integer, fraction) = if point <= 0 {
        let zeros = usize::try_from(-point).ok()?;
        ("0".to_owned(), format!("{}{digits}", "0".repeat(zeros)))
    } else if point >= len {
        let zeros = usize::try_from(point - len).ok()?;
        (format!("{digits}{}", "0".repeat(zeros)), String::new())
    } else {
        let at = usize::try_from(point).ok()?;
        (digits[..at].to_owned(), digits[at..].to_owned())
    };
    let integer = integer.trim_start_matches('0');
    let integer = if integer.is_empty() { "0" } else { integer };
    // serde_json wrote a float: keep it one when read back (`numeric` keeps the scale).
    let fraction = if fraction.is_empty() { "0" } else { &fraction };
    Some(format!("{sign}{integer}.{fraction}"))
}

/// A form's fields as the JSON object [`check_value`] reads: each name once, a name sent
/// more than once holding the list of its values.
pub fn form_as_json(pairs: Vec<(String, String)>) -> Value {
    let mut fields = serde_json::Map::new();
    for (name, value) in pairs {
        match fields.get_mut(&name) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => *first = Value::Array(vec![first.take(), Value::String(value)]),
            None => {
                fields.insert(name, Value::String(value));
            }
        }
    }
    Value::Object(fields)
}

/// A query string may not carry NUL (`%00`) anywhere: no store can hold it as a filter.
pub fn check_query(raw_query: &str) -> Result<(), Unstorable> {
    if raw_query.to_ascii_lowercase().contains("%00") {
        Err(Unstorable::Nul {
            path: "the query".into(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn ordinary_bodies_pass() {
        let body = json!({"customer_name": "Ann", "max_devices": 3, "metadata": {"a": [1, 2.5, -0.125, true, null, {"b": "c"}], "big": u64::MAX, "small": i64::MIN, "tiny": 1.5e-7, "frac": 0.1}});
        assert_eq!(check_value(&body), Ok(()));
    }

    #[test]
    fn numbers_a_store_would_change_are_refused() {
        for text in [
            "1.7976931348623157e308",
            "1e300",
            "1e15",
            "-1e16",
            "123456789012345678901234567890",
        ] {
            let body = parsed(&format!(r#"{{"metadata": {{"a": [{text}]}}}}"#));
            assert_eq!(
                check_value(&body),
                Err(Unstorable::Number {
                    path: "metadata.a[0]".into()
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn decimals_print_without_an_exponent_as_numeric_does() {
        assert_eq!(without_exponent("1.5e-7").unwrap(), "0.00000015");
        assert_eq!(without_exponent("2.5e3").unwrap(), "2500.0");
        assert_eq!(without_exponent("-12.25").unwrap(), "-12.25");
        assert_eq!(without_exponent("1e2").unwrap(), "100.0");
    }

    #[test]
    fn nul_is_refused_in_values_and_keys() {
        let in_value = json!({"device": {"name": "a\u{0}b"}});
        assert_eq!(
            check_value(&in_value),
            Err(Unstorable::Nul {
                path: "device.name".into()
            })
        );
        let in_key = json!({"metadata": {"k\u{0}": 1}});
        assert!(
            matches!(check_value(&in_key), Err(Unstorable::Nul { path }) if path == "metadata.k\\0")
        );
        assert!(check_query("q=%00abc").is_err());
        assert!(check_query("q=%2500").is_ok());
    }

    #[test]
    fn form_fields_are_checked_as_a_body() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let form = form_as_json(pairs(&[("a", "1"), ("b", "x"), ("a", "2")]));
        assert_eq!(form, json!({"a": ["1", "2"], "b": "x"}));
        assert_eq!(check_value(&form), Ok(()));
        assert_eq!(
            check_value(&form_as_json(pairs(&[
                ("csrf", "t"),
                ("customer_name", "a\0b")
            ]))),
            Err(Unstorable::Nul {
                path: "customer_name".into()
            })
        );
        assert!(check_value(&form_as_json(pairs(&[("k\0", "v")]))).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert_eq!(check_value(&deep), Ok(()));
        assert_eq!(check_value(&json!([deep])), Err(Unstorable::TooDeep));
    }
}
