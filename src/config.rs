//! Configuration from the environment (and `.env`), with the seed's variable names.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::http::client_origin::TrustedProxies;

mod logs;
pub use logs::{LogFormat, LogSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} has an invalid value: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// Every problem found, so that one run lists all there is to fix.
    #[error("refusing to start with ENVIRONMENT=production: {}", .0.join("; "))]
    UnsafeForProduction(Vec<String>),
}

/// Values that the seed's sample `.env` files shipped: never acceptable in production.
const WELL_KNOWN_SECRETS: &[&str] = &[
    "change-me",
    "changeme",
    "secret",
    "your-secret-key",
    "your-secret-key-here",
    "your-secret-key-change-in-production",
    "dev-secret-key",
];
const MIN_PRODUCTION_SECRET_LEN: usize = 32;

/// Everything the server reads from its environment. `Debug` prints secrets as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_name: String,
    pub debug: bool,
    pub environment: String,
    pub version: String,
    pub host: IpAddr,
    pub port: u16,
    /// `None` runs the server on the embedded store ([`DEFAULT_DATABASE_URL`]).
    pub database_url: Option<SecretString>,
    pub database_echo: bool,
    /// `None` runs the in-process bus: events go straight from the publisher to the
    /// projectors (one instance only).
    pub nats_url: Option<String>,
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    /// Signs admin access tokens. `None` means a random key per process (development only).
    pub secret_key: Option<SecretString>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub private_key_path: PathBuf,
    pub public_key_path: PathBuf,
    pub allowed_origins: Vec<String>,
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,
    pub rate_limit_per_minute: u32,
    /// Sign-in requests a minute per client address (`RATE_LIMIT_SIGN_IN_PER_MINUTE`).
    pub rate_limit_sign_in_per_minute: u32,
    /// Licensing requests a minute per client address (`RATE_LIMIT_LICENSING_PER_MINUTE`).
    pub rate_limit_licensing_per_minute: u32,
    /// Sign-in attempts an hour per account, from all addresses together
    /// (`RATE_LIMIT_SIGN_IN_PER_ACCOUNT_PER_HOUR`).
    pub sign_in_attempts_per_account_per_hour: u32,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// How long a stopping server waits for requests in flight (`SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request head (`HEADER_READ_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// Connections served at once, at most (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// One log line per request (`ACCESS_LOG`).
    pub access_log: bool,
    /// `LOG_FORMAT`, `LOG_LEVEL`, `LOG_FILE`, `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub logs: LogSettings,
    pub license_token_ttl: Duration,
    pub license_token_issuer: String,
    pub max_body_bytes: usize,
    /// Events a projector applies in one transaction, at most (`PROJECTION_BATCH_SIZE`).
    pub projection_batch_size: usize,
    /// How long a projector waits for a batch to fill (`PROJECTION_BATCH_WAIT_MS`).
    pub projection_batch_wait: Duration,
    /// When set, `/metrics` answers only requests carrying it as a bearer token.
    pub metrics_token: Option<SecretString>,
    /// When set, `/metrics` is also served on a listener of its own at this address.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether webhooks are delivered (`ENABLE_NOTIFICATIONS`); when off they queue.
    pub enable_notifications: bool,
    /// Whether the analytics read model is kept and served (`ENABLE_ANALYTICS`).
    pub enable_analytics: bool,
    /// Off (`ENABLE_DEVICE_TRACKING=false`) is privacy mode: licensing calls record no
    /// hostname, OS or app version, and no client address or user agent.
    pub enable_device_tracking: bool,
    /// Where 5xx answers and panics are reported (`SENTRY_DSN`); checked to be a DSN.
    pub sentry_dsn: Option<SecretString>,
    pub webhooks: WebhookSettings,
    pub deadlines: DeadlineSettings,
    /// How often the leader culls leases past their deadline (`LEASE_SCAN_INTERVAL`). A dead
    /// lease is culled within this of its deadline (well inside the 30 s promised).
    pub lease_scan_interval: Duration,
}

/// When deadline notices are recorded (`EXPIRY_*`).
#[derive(Debug, Clone)]
pub struct DeadlineSettings {
    /// How often the leader looks for due notices (`EXPIRY_SCAN_INTERVAL`).
    pub scan_interval: Duration,
    /// Days before a deadline that a reminder is due, longest first
    /// (`EXPIRY_REMINDER_DAYS`); empty for none.
    pub reminder_days: Vec<u32>,
}

pub const DEFAULT_REMINDER_DAYS: &str = "7,1";
/// The longest reminder: ten years ahead is not a reminder any more.
const MAX_REMINDER_DAYS: u32 = 3650;

/// How webhooks are delivered (`WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Plain `http://` receivers are refused unless this is set (`WEBHOOK_ALLOW_HTTP`).
    pub allow_http: bool,
    /// Receivers on loopback, private, link-local and other reserved addresses are refused
    /// unless this is set (`WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// The waits between attempts (`WEBHOOK_RETRY_SCHEDULE`); one attempt more than waits.
    pub retry_schedule: Vec<Duration>,
    /// How long one attempt may take (`WEBHOOK_TIMEOUT`).
    pub timeout: Duration,
    /// An endpoint failing for this long is disabled (`WEBHOOK_DISABLE_AFTER`).
    pub disable_after: Duration,
    /// How often each instance looks for deliveries that are due (`WEBHOOK_POLL_MS`).
    pub poll: Duration,
    /// After a rotation, deliveries carry a signature with the replaced secret too for this
    /// long (`WEBHOOK_ROTATION_GRACE`), so receivers can roll over without dropping any.
    pub rotation_grace: Duration,
    /// Whether deliveries carry the client's IP address and user agent from the event's
    /// metadata (`WEBHOOK_INCLUDE_REQUEST_METADATA`); off, a third-party receiver gets no
    /// personal data beyond the event itself.
    pub include_request_metadata: bool,
}

pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,30s,2m,10m,1h,6h,12h";

/// The embedded store when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/flowlytix.db";

impl Config {
    /// Reads `.env` (if present) and then the process environment, which wins.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from any name → value lookup, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let rate_limit_per_minute: u32 =
            parse("RATE_LIMIT_PER_MINUTE", var("RATE_LIMIT_PER_MINUTE"), 100)?;
        let config = Self {
            app_name: var("APP_NAME").unwrap_or_else(|| "Flowlytix Subscription Server".into()),
            debug: parse_bool("DEBUG", var("DEBUG"), false)?,
            environment: var("ENVIRONMENT").unwrap_or_else(|| "development".into()),
            version: var("VERSION").unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
            host: parse("HOST", var("HOST"), IpAddr::from([0, 0, 0, 0]))?,
            port: parse("PORT", var("PORT"), 8000)?,
            database_url: var("DATABASE_URL").map(SecretString::from),
            database_echo: parse_bool("DATABASE_ECHO", var("DATABASE_ECHO"), false)?,
            nats_url: var("NATS_URL"),
            nats_stream: var("NATS_STREAM").unwrap_or_else(|| "FLOWLYTIX_EVENTS".into()),
            nats_subject_prefix: var("NATS_SUBJECT_PREFIX")
                .unwrap_or_else(|| "flowlytix.events".into()),
            secret_key: var("SECRET_KEY").map(SecretString::from),
            access_token_ttl: minutes(
                "ACCESS_TOKEN_EXPIRE_MINUTES",
                var("ACCESS_TOKEN_EXPIRE_MINUTES"),
                30,
            )?,
            refresh_token_ttl: minutes(
                "REFRESH_TOKEN_EXPIRE_DAYS",
                var("REFRESH_TOKEN_EXPIRE_DAYS"),
                7,
            )? * (24 * 60),
            private_key_path: var("PRIVATE_KEY_PATH")
                .unwrap_or_else(|| "keys/license_private.pem".into())
                .into(),
            public_key_path: var("PUBLIC_KEY_PATH")
                .unwrap_or_else(|| "keys/license_public.pem".into())
                .into(),
            allowed_origins: var("ALLOWED_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            admin_email: var("ADMIN_EMAIL"),
            admin_password: var("ADMIN_PASSWORD").map(SecretString::from),
            rate_limit_per_minute,
            // Each budget defaults to RATE_LIMIT_PER_MINUTE, so that 0 there still turns
            // every limit off.
            rate_limit_sign_in_per_minute: parse(
                "RATE_LIMIT_SIGN_IN_PER_MINUTE",
                var("RATE_LIMIT_SIGN_IN_PER_MINUTE"),
                rate_limit_per_minute,
            )?,
            rate_limit_licensing_per_minute: parse(
                "RATE_LIMIT_LICENSING_PER_MINUTE",
                var("RATE_LIMIT_LICENSING_PER_MINUTE"),
                rate_limit_per_minute,
            )?,
            sign_in_attempts_per_account_per_hour: parse(
                "RATE_LIMIT_SIGN_IN_PER_ACCOUNT_PER_HOUR",
                var("RATE_LIMIT_SIGN_IN_PER_ACCOUNT_PER_HOUR"),
                if rate_limit_per_minute == 0 { 0 } else { 20 },
            )?,
            trusted_proxies: TrustedProxies::parse(&var("TRUSTED_PROXIES").unwrap_or_default())
                .map_err(|reason| ConfigError::Invalid {
                    name: "TRUSTED_PROXIES",
                    reason,
                })?,
            shutdown_timeout: Duration::from_secs(parse(
                "SHUTDOWN_TIMEOUT_SECS",
                var("SHUTDOWN_TIMEOUT_SECS"),
                20_u64,
            )?),
            header_read_timeout: parse_wait(
                "HEADER_READ_TIMEOUT",
                &var("HEADER_READ_TIMEOUT").unwrap_or_else(|| "10s".into()),
            )?,
            max_connections: match parse("MAX_CONNECTIONS", var("MAX_CONNECTIONS"), 10_000)? {
                0 => {
                    return Err(ConfigError::Invalid {
                        name: "MAX_CONNECTIONS",
                        reason: "must be at least 1".into(),
                    })
                }
                n => n,
            },
            access_log: parse_bool("ACCESS_LOG", var("ACCESS_LOG"), true)?,
            logs: LogSettings::from_lookup(&var)?,
            license_token_ttl: parse_duration("LICENSE_TOKEN_TTL", var("LICENSE_TOKEN_TTL"))?,
            license_token_issuer: var("LICENSE_TOKEN_ISSUER").unwrap_or_else(|| "flowlytix".into()),
            max_body_bytes: parse("MAX_BODY_BYTES", var("MAX_BODY_BYTES"), 64 * 1024)?,
            projection_batch_size: parse(
                "PROJECTION_BATCH_SIZE",
                var("PROJECTION_BATCH_SIZE"),
                500_usize,
            )?
            .clamp(1, 5000),
            projection_batch_wait: Duration::from_millis(parse(
                "PROJECTION_BATCH_WAIT_MS",
                var("PROJECTION_BATCH_WAIT_MS"),
                10_u64,
            )?),
            metrics_token: var("METRICS_TOKEN").map(SecretString::from),
            metrics_addr: var("METRICS_ADDR")
                .map(|v| {
                    v.parse()
                        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                            name: "METRICS_ADDR",
                            reason: format!("{e} (use host:port, e.g. 0.0.0.0:9100)"),
                        })
                })
                .transpose()?,
            enable_notifications: parse_bool(
                "ENABLE_NOTIFICATIONS",
                var("ENABLE_NOTIFICATIONS"),
                true,
            )?,
            enable_analytics: parse_bool("ENABLE_ANALYTICS", var("ENABLE_ANALYTICS"), true)?,
            enable_device_tracking: parse_bool(
                "ENABLE_DEVICE_TRACKING",
                var("ENABLE_DEVICE_TRACKING"),
                true,
            )?,
            sentry_dsn: match var("SENTRY_DSN") {
                None => None,
                Some(dsn) => match dsn.parse::<sentry::types::Dsn>() {
                    Ok(_) => Some(SecretString::from(dsn)),
                    Err(error) => {
                        return Err(ConfigError::Invalid {
                            name: "SENTRY_DSN",
                            reason: error.to_string(),
                        })
                    }
                },
            },
            webhooks: WebhookSettings {
                allow_http: parse_bool("WEBHOOK_ALLOW_HTTP", var("WEBHOOK_ALLOW_HTTP"), false)?,
                allow_private: parse_bool(
                    "WEBHOOK_ALLOW_PRIVATE",
                    var("WEBHOOK_ALLOW_PRIVATE"),
                    false,
                )?,
                retry_schedule: var("WEBHOOK_RETRY_SCHEDULE")
                    .unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.into())
                    .split(',')
                    .map(|wait| parse_wait("WEBHOOK_RETRY_SCHEDULE", wait.trim()))
                    .collect::<Result<_, _>>()?,
                timeout: parse_wait(
                    "WEBHOOK_TIMEOUT",
                    &var("WEBHOOK_TIMEOUT").unwrap_or_else(|| "10s".into()),
                )?,
                disable_after: parse_wait(
                    "WEBHOOK_DISABLE_AFTER",
                    &var("WEBHOOK_DISABLE_AFTER").unwrap_or_else(|| "5d".into()),
                )?,
                poll: Duration::from_millis(
                    parse("WEBHOOK_POLL_MS", var("WEBHOOK_POLL_MS"), 250_u64)?.clamp(10, 60_000),
                ),
                rotation_grace: parse_wait(
                    "WEBHOOK_ROTATION_GRACE",
                    &var("WEBHOOK_ROTATION_GRACE").unwrap_or_else(|| "24h".into()),
                )?,
                include_request_metadata: parse_bool(
                    "WEBHOOK_INCLUDE_REQUEST_METADATA",
                    var("WEBHOOK_INCLUDE_REQUEST_METADATA"),
                    false,
                )?,
            },
            deadlines: DeadlineSettings {
                scan_interval: parse_wait(
                    "EXPIRY_SCAN_INTERVAL",
                    &var("EXPIRY_SCAN_INTERVAL").unwrap_or_else(|| "60s".into()),
                )?,
                // The one setting where empty is not unset: it turns reminders off.
                reminder_days: parse_reminder_days(
                    lookup("EXPIRY_REMINDER_DAYS")
                        .as_deref()
                        .map_or(DEFAULT_REMINDER_DAYS, str::trim),
                )?,
            },
            lease_scan_interval: parse_wait(
                "LEASE_SCAN_INTERVAL",
                &var("LEASE_SCAN_INTERVAL").unwrap_or_else(|| "10s".into()),
            )?,
        };
        if let Some(algorithm) = var("ALGORITHM").filter(|a| a != "EdDSA") {
            // The seed signed admin tokens with HS256; this server signs every token with
            // Ed25519, so an old `.env` is accepted but its ALGORITHM has no effect.
            tracing::warn!(%algorithm, "ALGORITHM is ignored: tokens are always EdDSA (Ed25519)");
        }
        for ignored in ["RELOAD", "REDIS_URL"] {
            if var(ignored).is_some() {
                tracing::info!(
                    name = ignored,
                    "setting accepted for compatibility; it has no effect yet"
                );
            }
        }
        Ok(config)
    }

    /// The store to open: `DATABASE_URL`, or the embedded one when it is unset.
    pub fn store_url(&self) -> &str {
        self.database_url
            .as_ref()
            .map_or(DEFAULT_DATABASE_URL, |url| url.expose_secret())
    }

    pub fn is_production(&self) -> bool {
        self.environment.eq_ignore_ascii_case("production")
    }

    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The checks `ENVIRONMENT=production` insists on before the server may start, all of
    /// them at once: an operator fixing one problem per restart would need as many restarts.
    /// The private key's permissions are checked again where the key is loaded.
    pub fn check_production_safety(&self) -> Result<(), ConfigError> {
        if !self.is_production() {
            return Ok(());
        }
        let mut problems = Vec::new();
        if self.debug {
            problems.push("DEBUG must be false".to_owned());
        }
        // Metrics name routes, commands and volumes: not for the whole internet to read.
        if self.metrics_token.is_none() && self.metrics_addr.is_none() {
            problems.push("set METRICS_TOKEN (a bearer token for /metrics) or METRICS_ADDR (a listener of its own for /metrics)".to_owned());
        }
        match self.secret_key.as_ref().map(|s| s.expose_secret()) {
            None => problems.push("SECRET_KEY must be set".to_owned()),
            Some(secret)
                if WELL_KNOWN_SECRETS
                    .iter()
                    .any(|known| secret.eq_ignore_ascii_case(known)) =>
            {
                problems.push(
                    "SECRET_KEY is a default value; generate one with `openssl rand -hex 32`"
                        .to_owned(),
                );
            }
            Some(secret) if secret.len() < MIN_PRODUCTION_SECRET_LEN => problems.push(format!(
                "SECRET_KEY must be at least {MIN_PRODUCTION_SECRET_LEN} characters"
            )),
            Some(_) => {}
        }
        if let Some(mode) = readable_by_others(&self.private_key_path) {
            problems.push(format!(
                "private key {} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
                self.private_key_path.display(),
                self.private_key_path.display()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::UnsafeForProduction(problems))
        }
    }
}

/// The permission bits of `path` when group or others may read or write it (a missing file
/// is not a problem here: the server generates it with mode 0600).
fn readable_by_others(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

fn parse_bool(
    name: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::Invalid {
            name,
            reason: format!("{other:?} is not a boolean"),
        }),
    }
}

fn minutes(
    name: &'static str,
    value: Option<String>,
    default: u64,
) -> Result<Duration, ConfigError> {
    let n: u64 = parse(name, value, default)?;
    if n == 0 {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be positive".into(),
        });
    }
    Ok(Duration::from_secs(n * 60))
}

/// A wait such as `500ms`, `5s`, `2m`, `1h` or `1d` (a bare number is seconds); positive,
/// at most 30 days.
fn parse_wait(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { name, reason };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| invalid(format!("{value:?} is not a wait such as 30s, 2m or 1h")))?;
    let millis = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid(format!("{value:?}: use ms, s, m, h or d"))),
    };
    let wait = Duration::from_millis(n.saturating_mul(millis));
    if wait.is_zero() || wait > Duration::from_secs(30 * 86_400) {
        return Err(invalid(format!(
            "{value:?} must be positive and at most 30d"
        )));
    }
    Ok(wait)
}

/// `EXPIRY_REMINDER_DAYS`: comma-separated whole days (1 to 3650), longest first and each
/// once; empty or `none` for no reminders.
fn parse_reminder_days(value: &str) -> Result<Vec<u32>, ConfigError> {
    if value.is_empty() || value.eq_ignore_ascii_case("none") {
        return Ok(vec![]);
    }
    let mut days = value
        .split(',')
        .map(|day| match day.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_REMINDER_DAYS).contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                name: "EXPIRY_REMINDER_DAYS",
                reason: format!(
                    "{day:?} is not a whole number of days from 1 to {MAX_REMINDER_DAYS} \
                     (use e.g. 7,1; empty for no reminders)"
                ),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    Ok(days)
}

/// `LICENSE_TOKEN_TTL`: seconds, or a number with `s`, `m`, `h` or `d`. Default 7 days: how
/// long a client app keeps working offline on its last token.
fn parse_duration(name: &'static str, value: Option<String>) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(Duration::from_secs(7 * 24 * 3600));
    };
    let (digits, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => value.split_at(i),
        None => (value.as_str(), "s"),
    };
    let multiplier = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(ConfigError::Invalid {
                name,
                reason: "use seconds or a suffix s, m, h, d".into(),
            })
        }
    };
    let n: u64 = digits.parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("{value:?} is not a duration"),
    })?;
    if n == 0 {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be positive".into(),
        });
    }
    Ok(Duration::from_secs(n * multiplier))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.access_token_ttl, Duration::from_secs(30 * 60));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.rate_limit_per_minute, 100);
        assert_eq!(c.license_token_ttl, Duration::from_secs(7 * 24 * 3600));
        assert!(
            c.check_production_safety().is_ok(),
            "development has no production checks"
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(
            config(&[("LICENSE_TOKEN_TTL", "90m")])
                .unwrap()
                .license_token_ttl,
            Duration::from_secs(5400)
        );
        assert_eq!(
            config(&[("LICENSE_TOKEN_TTL", "120")])
                .unwrap()
                .license_token_ttl,
            Duration::from_secs(120)
        );
        assert!(config(&[("LICENSE_TOKEN_TTL", "7w")]).is_err());
        assert!(config(&[("PORT", "eighty")]).is_err());
        assert!(config(&[("DEBUG", "maybe")]).is_err());
        assert!(config(&[("METRICS_ADDR", "9100")]).is_err());
    }

    #[test]
    fn webhook_settings_have_safe_defaults_and_take_waits() {
        let c = config(&[]).unwrap();
        assert!(c.enable_notifications);
        assert!(!c.webhooks.allow_http && !c.webhooks.allow_private);
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(
            c.webhooks.retry_schedule,
            [
                Duration::from_secs(5),
                Duration::from_secs(30),
                minutes(2),
                minutes(10),
                minutes(60),
                minutes(360),
                minutes(720)
            ]
        );
        let total: Duration = c.webhooks.retry_schedule.iter().sum();
        assert!(total > Duration::from_secs(19 * 3600) && total < Duration::from_secs(25 * 3600));
        assert_eq!(c.webhooks.disable_after, Duration::from_secs(5 * 86_400));
        assert_eq!(c.webhooks.rotation_grace, Duration::from_secs(86_400));
        assert!(!c.webhooks.include_request_metadata);
        let c = config(&[
            ("WEBHOOK_RETRY_SCHEDULE", "100ms, 1s"),
            ("ENABLE_NOTIFICATIONS", "false"),
        ])
        .unwrap();
        assert_eq!(
            c.webhooks.retry_schedule,
            [Duration::from_millis(100), Duration::from_secs(1)]
        );
        assert!(!c.enable_notifications);
        let c = config(&[]).unwrap();
        assert!(
            c.enable_analytics && c.enable_device_tracking,
            "both on by default"
        );
        let c = config(&[
            ("ENABLE_ANALYTICS", "false"),
            ("ENABLE_DEVICE_TRACKING", "off"),
        ])
        .unwrap();
        assert!(!c.enable_analytics && !c.enable_device_tracking);
        for bad in ["5x", "0s", "31d", "1s,,2s", "-1s"] {
            assert!(config(&[("WEBHOOK_RETRY_SCHEDULE", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn deadline_settings_default_to_a_minute_and_reminders_7_and_1_days_before() {
        let c = config(&[]).unwrap();
        assert_eq!(c.deadlines.scan_interval, Duration::from_secs(60));
        assert_eq!(c.deadlines.reminder_days, [7, 1]);
        let c = config(&[
            ("EXPIRY_SCAN_INTERVAL", "250ms"),
            ("EXPIRY_REMINDER_DAYS", " 1, 30,7,7 "),
        ])
        .unwrap();
        assert_eq!(c.deadlines.scan_interval, Duration::from_millis(250));
        assert_eq!(c.deadlines.reminder_days, [30, 7, 1]);
        for off in ["", "  ", "none"] {
            let c = config(&[("EXPIRY_REMINDER_DAYS", off)]).unwrap();
            assert!(c.deadlines.reminder_days.is_empty(), "{off:?}");
        }
        for (name, value) in [
            ("EXPIRY_REMINDER_DAYS", "7,,1"),
            ("EXPIRY_REMINDER_DAYS", "0"),
            ("EXPIRY_REMINDER_DAYS", "-1"),
            ("EXPIRY_REMINDER_DAYS", "1.5"),
            ("EXPIRY_REMINDER_DAYS", "7d"),
            ("EXPIRY_REMINDER_DAYS", "3651"),
            ("EXPIRY_SCAN_INTERVAL", "0s"),
            ("EXPIRY_SCAN_INTERVAL", "often"),
        ] {
            let error = config(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{value}: {error}");
        }
    }

    #[test]
    fn production_refuses_unsafe_settings_and_says_which() {
        let strong = "a".repeat(40);
        let cases = [
            (
                vec![
                    ("ENVIRONMENT", "production"),
                    ("SECRET_KEY", strong.as_str()),
                    ("DEBUG", "true"),
                ],
                "DEBUG",
            ),
            (
                vec![("ENVIRONMENT", "production"), ("METRICS_TOKEN", "t")],
                "SECRET_KEY must be set",
            ),
            (
                vec![
                    ("ENVIRONMENT", "production"),
                    ("METRICS_TOKEN", "t"),
                    ("SECRET_KEY", "change-me"),
                ],
                "default value",
            ),
            (
                vec![
                    ("ENVIRONMENT", "production"),
                    ("METRICS_TOKEN", "t"),
                    ("SECRET_KEY", "short"),
                ],
                "at least 32",
            ),
            (
                vec![
                    ("ENVIRONMENT", "production"),
                    ("SECRET_KEY", strong.as_str()),
                ],
                "METRICS_TOKEN",
            ),
        ];
        for (vars, expected) in cases {
            let err = config(&vars)
                .unwrap()
                .check_production_safety()
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        for metrics in [
            ("METRICS_TOKEN", "a-token"),
            ("METRICS_ADDR", "127.0.0.1:9100"),
        ] {
            let ok = config(&[
                ("ENVIRONMENT", "production"),
                ("SECRET_KEY", &strong),
                metrics,
            ])
            .unwrap();
            assert!(
                ok.check_production_safety().is_ok(),
                "{metrics:?} is enough"
            );
        }
    }

    #[test]
    fn production_reports_every_problem_in_one_run() {
        let dir = std::env::temp_dir().join(format!("flowlytix-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let private_key = dir.join("private.pem");
        std::fs::write(&private_key, "a key").unwrap();
        std::fs::set_permissions(
            &private_key,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let err = config(&[
            ("ENVIRONMENT", "production"),
            ("DEBUG", "true"),
            ("SECRET_KEY", "change-me"),
            ("PRIVATE_KEY_PATH", private_key.to_str().unwrap()),
        ])
        .unwrap()
        .check_production_safety()
        .unwrap_err();
        let ConfigError::UnsafeForProduction(problems) = &err else {
            panic!("{err}");
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        let message = err.to_string();
        for expected in ["DEBUG", "METRICS_TOKEN", "default value", "mode 644"] {
            assert!(
                message.contains(expected),
                "{message} should mention {expected}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_budgets_follow_rate_limit_per_minute_unless_set_and_zero_turns_all_off() {
        let c = config(&[("RATE_LIMIT_PER_MINUTE", "30")]).unwrap();
        assert_eq!(c.rate_limit_sign_in_per_minute, 30);
        assert_eq!(c.rate_limit_licensing_per_minute, 30);
        assert_eq!(c.sign_in_attempts_per_account_per_hour, 20);
        let c = config(&[
            ("RATE_LIMIT_PER_MINUTE", "0"),
            ("RATE_LIMIT_LICENSING_PER_MINUTE", "600"),
        ])
        .unwrap();
        assert_eq!(c.rate_limit_sign_in_per_minute, 0);
        assert_eq!(c.rate_limit_licensing_per_minute, 600);
        assert_eq!(c.sign_in_attempts_per_account_per_hour, 0);
        assert!(config(&[("RATE_LIMIT_SIGN_IN_PER_MINUTE", "-1")]).is_err());
    }

    #[test]
    fn edge_settings_default_to_a_10s_header_timeout_a_connection_cap_and_an_access_log() {
        let c = config(&[]).unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 10_000);
        assert!(c.access_log);
        let c = config(&[
            ("HEADER_READ_TIMEOUT", "1500ms"),
            ("MAX_CONNECTIONS", "64"),
            ("ACCESS_LOG", "false"),
        ])
        .unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_millis(1500));
        assert_eq!(c.max_connections, 64);
        assert!(!c.access_log);
        for (name, value) in [
            ("HEADER_READ_TIMEOUT", "0s"),
            ("HEADER_READ_TIMEOUT", "soon"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "-1"),
            ("ACCESS_LOG", "sometimes"),
        ] {
            let error = config(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn trusted_proxies_and_log_settings_are_refused_by_name_when_bad() {
        let c = config(&[("TRUSTED_PROXIES", "10.0.0.0/8, ::1")]).unwrap();
        assert!(c.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
        assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
        assert!(config(&[]).unwrap().trusted_proxies.is_empty());
        for (name, value) in [
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
            ("LOG_FORMAT", "yaml"),
            ("SHUTDOWN_TIMEOUT_SECS", "soon"),
        ] {
            let error = config(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }

    /// Every variable `from_lookup` asks for (the log settings included), and every
    /// `var("…")` in the code that reads them, in case a read is ever made conditional.
    fn variables_read() -> BTreeSet<String> {
        let asked = RefCell::new(BTreeSet::new());
        let _ = Config::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            None
        });
        let mut read = asked.into_inner();
        for source in [include_str!("config.rs"), include_str!("config/logs.rs")] {
            let code = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
            for quoted in code.split("var(\"").skip(1) {
                read.insert(quoted[..quoted.find('"').unwrap()].to_owned());
            }
        }
        read
    }

    /// The names in the first column of docs/configuration.md's table.
    fn variables_documented() -> BTreeSet<String> {
        include_str!("../docs/configuration.md")
            .lines()
            .filter(|line| line.starts_with("| `"))
            .filter_map(|row| row.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_configuration_reference_names_every_variable_read_and_no_other() {
        let read = variables_read();
        let documented = variables_documented();
        assert!(read.contains("DATABASE_URL") && read.contains("LOG_FORMAT"));
        let undocumented: Vec<_> = read.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&read).collect();
        assert!(
            undocumented.is_empty(),
            "read but not in docs/configuration.md: {undocumented:?}"
        );
        assert!(
            stale.is_empty(),
            "in docs/configuration.md but never read: {stale:?}"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = config(&[
            ("SECRET_KEY", "super-secret-value-123"),
            ("ADMIN_PASSWORD", "hunter2hunter2"),
            ("METRICS_TOKEN", "scrape-token-value-456"),
        ])
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("super-secret-value-123"));
        assert!(!printed.contains("hunter2hunter2"));
        assert!(!printed.contains("scrape-token-value-456"));
    }
}
