//! Validated value types: an invalid email, plan or hash cannot be built.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("not a valid email address")]
    InvalidEmail,
    #[error("a plan is 1 to 64 characters of a-z, 0-9, '-' and '_'")]
    InvalidPlan,
    #[error("not a lowercase hex SHA-256 digest")]
    InvalidSha256Hex,
    #[error("unknown role (expected admin or auditor)")]
    InvalidRole,
    #[error("a webhook signing secret must arrive sealed, never in plaintext")]
    NotSealed,
    #[error("a code is 1 to 64 characters of a-z, 0-9, '-' and '_'")]
    InvalidCode,
    #[error("not an ISO 8601 duration of at least one second (e.g. P1Y, P14D, PT10M)")]
    InvalidDuration,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(
    /// Identifies a subscription aggregate (and its event stream).
    SubscriptionId
);
uuid_id!(
    /// Identifies one device activation within a subscription.
    DeviceId
);
uuid_id!(
    /// Identifies a webhook endpoint aggregate.
    WebhookEndpointId
);
uuid_id!(
    /// Identifies an admin user aggregate; derived from the email so that emails stay unique.
    AdminId
);

uuid_id!(
    /// Identifies a product aggregate; derived from its code, which is therefore unique.
    ProductId
);
uuid_id!(
    /// Identifies a policy aggregate; derived from its product and code (unique per product).
    PolicyId
);
uuid_id!(
    /// Identifies an entitlement aggregate; derived from its code, which is therefore unique.
    EntitlementId
);

// Catalogue ids are UUIDv5 of their codes, like admin ids of emails: two creates with one
// code name one aggregate, so the event store's optimistic lock keeps codes unique on every
// backend and instance without a uniqueness table. The namespaces must never change.
impl ProductId {
    const NAMESPACE: Uuid = Uuid::from_u128(0x0b5e_61f4_7d2c_4a8e_9b13_c2d4_e5f6_a701);

    pub fn for_code(code: &Code) -> Self {
        Self(Uuid::new_v5(&Self::NAMESPACE, code.as_str().as_bytes()))
    }
}

impl PolicyId {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5c9a_0d3e_18b7_4f62_a4e1_7b8c_9d0e_f102);

    pub fn for_code(product: ProductId, code: &Code) -> Self {
        let name = format!("{product}/{}", code.as_str());
        Self(Uuid::new_v5(&Self::NAMESPACE, name.as_bytes()))
    }
}

impl EntitlementId {
    const NAMESPACE: Uuid = Uuid::from_u128(0xe7a1_2b3c_4d5e_4f60_8172_8394_a5b6_c703);

    pub fn for_code(code: &Code) -> Self {
        Self(Uuid::new_v5(&Self::NAMESPACE, code.as_str().as_bytes()))
    }
}

impl AdminId {
    /// Namespace for [`AdminId::for_email`]; any fixed UUID works, it must never change.
    const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_7f0e_2b7a_4c39_9d0e_5a61_f1a0_c0de);

    /// The admin id is a UUIDv5 of the normalized email: two admins with one email would
    /// share one aggregate, so the event store's optimistic lock enforces uniqueness.
    pub fn for_email(email: &Email) -> Self {
        Self(Uuid::new_v5(&Self::NAMESPACE, email.as_str().as_bytes()))
    }
}

/// A normalized (trimmed, lowercased) email address with a plausible shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.split_once('@').ok_or(ValueError::InvalidEmail)?;
        let well_formed = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if well_formed {
            Ok(Self(email))
        } else {
            Err(ValueError::InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plan slug such as `pro` or `enterprise-2024`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Plan(String);

impl Plan {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::InvalidPlan)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Plan {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Plan> for String {
    fn from(plan: Plan) -> Self {
        plan.0
    }
}

/// A catalogue code (product, policy, entitlement) such as `pro` or `export`: the same
/// slug rules as a plan, since a policy's code is the plan of the subscriptions following it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Code(String);

impl Code {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        Plan::parse(raw)
            .map(|plan| Self(plan.0))
            .map_err(|_| ValueError::InvalidCode)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Code {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Code> for String {
    fn from(code: Code) -> Self {
        code.0
    }
}

impl From<&Code> for Plan {
    fn from(code: &Code) -> Self {
        Plan(code.0.clone())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest as 64 lowercase hex characters: how license keys, device fingerprints
/// and the like are kept, so the plaintext never enters an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let valid = raw.len() == 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::InvalidSha256Hex)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sha256Hex> for String {
    fn from(hash: Sha256Hex) -> Self {
        hash.0
    }
}

/// What an admin user may do: `admin` everything, `auditor` read only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Auditor,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw {
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            _ => Err(ValueError::InvalidRole),
        }
    }
}

/// The first and last day an instant given to the server may fall on (UTC): four-digit
/// years after the Unix epoch, which RFC 3339, both stores and every client read alike.
pub const EARLIEST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(day) => day,
    None => NaiveDate::MIN,
};
pub const LATEST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(day) => day,
    None => NaiveDate::MAX,
};

/// Whether `day` lies within [`EARLIEST_DAY`]..=[`LATEST_DAY`].
pub fn is_supported_day(day: NaiveDate) -> bool {
    (EARLIEST_DAY..=LATEST_DAY).contains(&day)
}

/// Whether `instant` falls on a supported day.
pub fn is_supported_instant(instant: DateTime<Utc>) -> bool {
    is_supported_day(instant.date_naive())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn email_is_normalized_and_checked() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert_eq!(Email::parse(bad), Err(ValueError::InvalidEmail), "{bad}");
        }
    }

    #[test]
    fn plan_is_a_slug() {
        assert!(Plan::parse("pro-2024_x").is_ok());
        for bad in ["", "Pro", "pro plan", &"x".repeat(65)] {
            assert_eq!(Plan::parse(bad), Err(ValueError::InvalidPlan), "{bad}");
        }
    }

    #[test]
    fn sha256_hex_is_64_lowercase_hex() {
        assert!(Sha256Hex::parse(&"ab".repeat(32)).is_ok());
        assert!(Sha256Hex::parse(&"AB".repeat(32)).is_err());
        assert!(Sha256Hex::parse("abc").is_err());
    }

    #[test]
    fn supported_instants_are_years_1970_to_9999() {
        use chrono::TimeZone;
        assert!(is_supported_instant(
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap()
        ));
        assert!(is_supported_instant(
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
        ));
        assert!(!is_supported_instant(
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap()
        ));
        assert!(!is_supported_instant(
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap()
        ));
        assert!(!is_supported_day(NaiveDate::MIN));
        assert!(!is_supported_day(NaiveDate::MAX));
    }

    #[test]
    fn admin_id_follows_the_normalized_email() {
        let a = AdminId::for_email(&Email::parse("Ann@Example.com").unwrap());
        let b = AdminId::for_email(&Email::parse("ann@example.com").unwrap());
        let c = AdminId::for_email(&Email::parse("bob@example.com").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
