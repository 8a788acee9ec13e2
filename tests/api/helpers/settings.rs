//! The configuration every test server gets: a database, signing keys and the first admin,
//! in process (`test_config`) or as the environment of the binary (`server_env`).

use std::collections::HashMap;
use std::path::Path;

use flowlytix_server::Config;

use super::NatsNames;

pub const ADMIN_EMAIL: &str = "root@flowlytix.test";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// The settings both kinds of server share.
fn common(database_url: &str, key_dir: &Path) -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        (
            "SECRET_KEY".into(),
            "test-secret-key-that-is-long-enough-0123456789".into(),
        ),
        // Tests send bursts from one address; the limit has a test of its own.
        ("RATE_LIMIT_PER_MINUTE".into(), "0".into()),
        (
            "PRIVATE_KEY_PATH".into(),
            key_dir.join("private.pem").display().to_string(),
        ),
        (
            "PUBLIC_KEY_PATH".into(),
            key_dir.join("public.pem").display().to_string(),
        ),
    ]
}

/// The configuration of an in-process server; `extra` adds or overrides settings.
pub fn test_config(database_url: &str, key_dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = common(database_url, key_dir).into_iter().collect();
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config is valid")
}

/// The environment of a server child process: a database, signing keys, the first admin
/// and optionally a NATS stream. `PORT` and `HOST` are set per start.
pub fn server_env(
    database_url: &str,
    key_dir: &Path,
    nats: Option<&NatsNames>,
) -> Vec<(String, String)> {
    let mut env = common(database_url, key_dir);
    env.push(("RUST_LOG".into(), "info".into()));
    if let Some(nats) = nats {
        env.extend(nats.env());
    }
    env
}
