//! The log settings, read before (and apart from) the rest of the config, so that the log
//! exists while the config is parsed.

use std::path::PathBuf;

use tracing_subscriber::EnvFilter;

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// What the log settings say, read before (and apart from) the rest of the config, so that
/// the log exists while the config is parsed.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive (`info`, `debug,sqlx=warn`, …): `LOG_LEVEL`, else
    /// `RUST_LOG`, else a default that `DEBUG=true` raises.
    pub level: Option<String>,
    /// `LOG_FILE`: e.g. `logs/app.log`; rotated daily as `logs/app.log.YYYY-MM-DD`.
    pub file: Option<PathBuf>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: where spans go; none, nothing is exported.
    pub otlp_endpoint: Option<String>,
    pub debug: bool,
}

/// What an empty environment gives: text on standard error at the default level.
impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: None,
            file: None,
            otlp_endpoint: None,
            debug: false,
        }
    }
}

impl LogSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    }

    /// From a lookup that trims and drops empty values (as `Config::from_lookup` does).
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let production = var("ENVIRONMENT").is_some_and(|e| e.eq_ignore_ascii_case("production"));
        let format = match var("LOG_FORMAT").map(|f| f.to_ascii_lowercase()).as_deref() {
            None if production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty" | "text") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    reason: format!("{other:?} is not json or pretty"),
                })
            }
        };
        let level = var("LOG_LEVEL");
        if let Some(level) = &level {
            EnvFilter::try_new(level).map_err(|e| ConfigError::Invalid {
                name: "LOG_LEVEL",
                reason: e.to_string(),
            })?;
        }
        let debug = var("DEBUG").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        Ok(Self {
            format,
            level,
            file: var("LOG_FILE").map(PathBuf::from),
            otlp_endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT"),
            debug,
        })
    }

    /// The filter the log is written through: `level`, else `RUST_LOG`, else a default.
    pub(crate) fn filter(&self) -> EnvFilter {
        if let Some(level) = &self.level {
            if let Ok(filter) = EnvFilter::try_new(level) {
                return filter;
            }
        }
        let default = if self.debug {
            "debug,sqlx=info,hyper=info"
        } else {
            "info,sqlx=warn,tower_http=info"
        };
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<LogSettings, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        LogSettings::from_lookup(&|name| map.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn json_is_the_default_in_production_and_pretty_elsewhere() {
        assert_eq!(settings(&[]).unwrap().format, LogFormat::Pretty);
        assert_eq!(
            settings(&[("ENVIRONMENT", "production")]).unwrap().format,
            LogFormat::Json
        );
        assert_eq!(
            settings(&[("ENVIRONMENT", "production"), ("LOG_FORMAT", "pretty")])
                .unwrap()
                .format,
            LogFormat::Pretty
        );
        assert_eq!(
            settings(&[("LOG_FORMAT", "JSON")]).unwrap().format,
            LogFormat::Json
        );
    }

    #[test]
    fn a_bad_format_or_level_is_refused_by_name() {
        let error = settings(&[("LOG_FORMAT", "xml")]).unwrap_err().to_string();
        assert!(error.contains("LOG_FORMAT"), "{error}");
        let error = settings(&[("LOG_LEVEL", "info,[")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("LOG_LEVEL"), "{error}");
        assert!(settings(&[("LOG_LEVEL", "debug,sqlx=warn")]).is_ok());
    }
}
