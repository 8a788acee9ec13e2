//! ISO 8601 durations as policies state them (`P1Y`, `P14D`, `PT10M`), kept as written and
//! added to instants by the calendar: `P1M` from 31 January ends on the last day of February.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Months, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::values::ValueError;

/// The longest duration a policy may state, so that any sum stays within supported years.
const MAX_YEARS: u32 = 100;

/// A positive ISO 8601 duration of whole seconds or more.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IsoDuration {
    text: String,
    months: u32,
    seconds: i64,
}

impl IsoDuration {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let parsed = iso8601::Duration::from_str(raw).map_err(|_| ValueError::InvalidDuration)?;
        let (months, seconds) = match parsed {
            iso8601::Duration::YMDHMS {
                year,
                month,
                day,
                hour,
                minute,
                second,
                millisecond,
            } => {
                if millisecond != 0 || year > MAX_YEARS {
                    return Err(ValueError::InvalidDuration);
                }
                let seconds = i64::from(day) * 86_400
                    + i64::from(hour) * 3_600
                    + i64::from(minute) * 60
                    + i64::from(second);
                (year * 12 + month, seconds)
            }
            iso8601::Duration::Weeks(weeks) => (0, i64::from(weeks) * 7 * 86_400),
        };
        let too_long = seconds > i64::from(MAX_YEARS) * 366 * 86_400;
        if (months == 0 && seconds == 0) || too_long {
            return Err(ValueError::InvalidDuration);
        }
        Ok(Self {
            text: raw.to_owned(),
            months,
            seconds,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `start` plus this duration: calendar months first, then the exact seconds. `None`
    /// past the end of chrono's calendar.
    pub fn after(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        start
            .checked_add_months(Months::new(self.months))?
            .checked_add_signed(TimeDelta::seconds(self.seconds))
    }
}

impl IsoDuration {
    /// The earliest start that `after` takes past `end` (the calendar's inverse, near
    /// enough for a search bound: `after(before(end)) >= end` to within a month's slack).
    pub fn before(&self, end: DateTime<Utc>) -> Option<DateTime<Utc>> {
        end.checked_sub_signed(TimeDelta::seconds(self.seconds))?
            .checked_sub_months(Months::new(self.months))
    }
}

impl TryFrom<String> for IsoDuration {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IsoDuration> for String {
    fn from(duration: IsoDuration) -> Self {
        duration.text
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    #[test]
    fn years_and_months_follow_the_calendar() {
        let year = IsoDuration::parse("P1Y").unwrap();
        assert_eq!(year.after(at(2024, 2, 29)), Some(at(2025, 2, 28)));
        let month = IsoDuration::parse("P1M").unwrap();
        assert_eq!(month.after(at(2025, 1, 31)), Some(at(2025, 2, 28)));
    }

    #[test]
    fn days_weeks_and_times_are_exact() {
        let grace = IsoDuration::parse("P14D").unwrap();
        assert_eq!(grace.after(at(2025, 1, 1)), Some(at(2025, 1, 15)));
        assert_eq!(
            IsoDuration::parse("P2W").unwrap().after(at(2025, 1, 1)),
            Some(at(2025, 1, 15))
        );
        let beat = IsoDuration::parse("PT10M").unwrap();
        assert_eq!(
            beat.after(at(2025, 1, 1)),
            Some(at(2025, 1, 1) + TimeDelta::minutes(10))
        );
        assert_eq!(IsoDuration::parse("PT1S").unwrap().as_str(), "PT1S");
    }

    #[test]
    fn zero_fractional_huge_and_malformed_durations_are_refused() {
        for bad in [
            "", "P", "PT", "P0D", "PT0S", "1Y", "P1X", "PT0.5S", "P101Y", "P99999D", "p1y",
        ] {
            assert_eq!(
                IsoDuration::parse(bad),
                Err(ValueError::InvalidDuration),
                "{bad}"
            );
        }
    }

    #[test]
    fn it_is_kept_as_written() {
        let json = serde_json::to_string(&IsoDuration::parse("P1Y2M").unwrap()).unwrap();
        assert_eq!(json, "\"P1Y2M\"");
        let back: IsoDuration = serde_json::from_str(&json).unwrap();
        assert_eq!(back.after(at(2025, 1, 1)), Some(at(2026, 3, 1)));
    }
}
