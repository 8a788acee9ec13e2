//! The `flowlytix` binary's one-off commands, run as an operator runs them: from a directory
//! other than the server's, with the server's environment or without it. Only `serve` and
//! `migrate` create a store or keys; the others refuse, say why, and exit non-zero.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    backend, free_port, fresh_database, server_env, spawn_app, ApiClient, Backend, ServerProcess,
};

/// Runs `flowlytix ARGS` in `dir` with exactly `env`, `stdin` as its standard input (not a
/// terminal, so a password is read as a line).
async fn flowlytix(dir: &Path, env: &[(String, String)], args: &[&str], stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowlytix"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the flowlytix binary");
    let mut input = child.stdin.take().expect("its standard input");
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("flowlytix {args:?} did not finish within 60 s"))
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A new empty directory: where an operator might run a command by mistake.
fn empty_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowlytix-test-cli-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn commands_that_read_refuse_when_the_store_or_keys_are_missing_and_create_nothing() {
    let dir = empty_dir();
    // On SQLite the default store, relative to the directory; on PostgreSQL an empty
    // database. Keys at their default paths, relative too.
    let mut env = Vec::new();
    let postgres = match backend() {
        Backend::Postgres => {
            let url = fresh_database().await;
            env.push(("DATABASE_URL".to_owned(), url.clone()));
            Some(sqlx::PgPool::connect(&url).await.unwrap())
        }
        Backend::Sqlite => None,
    };
    let store_missing = match backend() {
        Backend::Sqlite => format!("no database at {}", dir.join("data/flowlytix.db").display()),
        Backend::Postgres => "has no Flowlytix tables".to_owned(),
    };
    let backup_refused = match backend() {
        Backend::Sqlite => store_missing.clone(),
        Backend::Postgres => "pg_dump".to_owned(),
    };
    let keys_missing = format!(
        "no license signing key at {}",
        dir.join("keys/license_private.pem").display()
    );
    let cases: [(&[&str], &str); 6] = [
        (&["keys", "show"], &keys_missing),
        (&["events", "export"], &store_missing),
        (&["replay"], &store_missing),
        (&["admin", "create", "--email", "a@b.c"], &store_missing),
        (&["admin", "disable", "--email", "a@b.c"], &store_missing),
        (&["backup", "copy.db"], &backup_refused),
    ];
    for (args, reason) in cases {
        let output = flowlytix(&dir, &env, args, "a-long-enough-password\n").await;
        assert!(!output.status.success(), "{args:?} must fail");
        let said = stderr(&output);
        assert!(
            said.contains(reason),
            "{args:?} should say {reason:?}: {said}"
        );
        assert!(
            said.contains("`flowlytix serve` or `flowlytix migrate`") || said.contains("pg_dump"),
            "{args:?} should say what creates it: {said}"
        );
        assert_eq!(stdout(&output), "", "{args:?} printed a result");
        assert!(
            entries(&dir).is_empty(),
            "{args:?} created {:?}",
            entries(&dir)
        );
    }
    if let Some(pool) = &postgres {
        let tables: i64 = sqlx::query_scalar(
            "select count(*) from information_schema.tables where table_schema = 'public'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(tables, 0, "no table was created");
    }

    // A new install's first steps: migrate creates both, then the readers work.
    let migrated = flowlytix(&dir, &env, &["migrate"], "").await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let line = stdout(&migrated);
    assert!(
        line.starts_with("migrated ") && line.contains("license signing key"),
        "{line}"
    );
    let created = flowlytix(
        &dir,
        &env,
        &[
            "admin",
            "create",
            "--email",
            "first@b.c",
            "--role",
            "auditor",
        ],
        "a-long-enough-password\n",
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    assert_eq!(stdout(&created), "created admin first@b.c (auditor)\n");
    let shown = flowlytix(&dir, &env, &["keys", "show"], "").await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(stdout(&shown).starts_with("kid: "), "{}", stdout(&shown));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn commands_run_with_the_servers_environment_work_on_its_store_and_keys() {
    let app = spawn_app().await;
    let env = server_env(&app.database_url, &app.key_dir, None);
    let elsewhere = empty_dir();

    let jwks: Value = app
        .anon(Method::GET, "/.well-known/jwks.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = flowlytix(&elsewhere, &env, &["keys", "show"], "").await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    assert!(
        stdout(&shown).starts_with(&format!("kid: {kid}\n-----BEGIN PUBLIC KEY-----")),
        "{}",
        stdout(&shown)
    );

    let created = flowlytix(
        &elsewhere,
        &env,
        &[
            "admin",
            "create",
            "--email",
            "auditor@flowlytix.test",
            "--role",
            "auditor",
        ],
        "an-auditors-long-password\n",
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    assert_eq!(
        stdout(&created),
        "created admin auditor@flowlytix.test (auditor)\n"
    );
    let signed_in = app
        .anon(Method::POST, "/api/v1/auth/login")
        .json(&json!({"email": "auditor@flowlytix.test", "password": "an-auditors-long-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);

    let events = app.event_count().await;
    let exported = flowlytix(&elsewhere, &env, &["events", "export"], "").await;
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(stdout(&exported).lines().count() as i64, events);
    assert!(
        stderr(&exported).contains(&format!("exported {events} events")),
        "{}",
        stderr(&exported)
    );

    let replayed = flowlytix(&elsewhere, &env, &["replay"], "").await;
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert!(
        stdout(&replayed).starts_with("rebuilt the read models from "),
        "{}",
        stdout(&replayed)
    );

    if backend() == Backend::Postgres {
        let refused = flowlytix(&elsewhere, &env, &["backup", "copy.db"], "").await;
        assert!(!refused.status.success());
        assert!(
            stderr(&refused).contains("pg_dump") && stderr(&refused).contains("operations.md"),
            "{}",
            stderr(&refused)
        );
    }
    assert!(entries(&elsewhere).is_empty(), "{:?}", entries(&elsewhere));
}

#[tokio::test]
async fn production_refuses_to_start_naming_every_problem_at_once() {
    let dir = empty_dir();
    let env: Vec<(String, String)> = [
        ("ENVIRONMENT", "production"),
        ("DEBUG", "true"),
        ("SECRET_KEY", "change-me"),
        ("HOST", "127.0.0.1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("PORT".to_owned(), free_port().to_string())])
    .collect();
    let output = flowlytix(&dir, &env, &["serve"], "").await;
    assert!(!output.status.success());
    let said = format!("{}{}", stdout(&output), stderr(&output));
    for problem in [
        "DEBUG must be false",
        "METRICS_TOKEN",
        "SECRET_KEY is a default value",
    ] {
        assert!(said.contains(problem), "should name {problem:?}: {said}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A backup taken while subscriptions are being created holds every one acknowledged before
/// it began, and a server started on it serves them from read models that match its events.
/// The embedded store only: on PostgreSQL the command refuses (tested above), and pg_dump or
/// a base backup does this job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_write_load_holds_every_acknowledged_subscription() {
    if backend() == Backend::Postgres {
        eprintln!("note: flowlytix backup is for the embedded store; on PostgreSQL it refuses");
        return;
    }
    let app = spawn_app().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (api, stop, acknowledged) = (app.api(), stop.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let created = api
                        .create(json!({
                            "customer_email": format!("w{writer}-{n}@example.com"),
                            "customer_name": format!("Writer {writer}"),
                            "plan": "pro",
                            "max_devices": 1,
                        }))
                        .await;
                    let id = created["id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push((id, Instant::now()));
                }
            })
        })
        .collect();
    let load_under_way = |at_least: usize| {
        let acknowledged = acknowledged.clone();
        async move {
            while acknowledged.lock().unwrap().len() < at_least {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), load_under_way(20))
        .await
        .expect("the writers get going");

    let began = Instant::now();
    let elsewhere = empty_dir();
    let copy = elsewhere.join("copy.db");
    let env = server_env(&app.database_url, &app.key_dir, None);
    let backed_up = flowlytix(&elsewhere, &env, &["backup", "copy.db"], "").await;
    let during = acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at > began)
        .count();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    assert!(
        stdout(&backed_up).starts_with("backed up "),
        "{}",
        stdout(&backed_up)
    );
    eprintln!("{} subscriptions were created while the backup ran", during);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before: Vec<String> = acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id.clone())
        .collect();

    let copy_url = format!("sqlite://{}", copy.display());
    let created_in_copy: i64 = {
        let pool = sqlx::SqlitePool::connect(&format!("{copy_url}?mode=ro"))
            .await
            .unwrap();
        let n = sqlx::query_scalar(
            "select count(*) from events where event_type = 'SubscriptionCreated'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    };
    let restored = ServerProcess::start(&server_env(&copy_url, &app.key_dir, None)).await;
    let api = ApiClient::login(&restored.address).await;
    api.wait_for_read_models(Duration::from_secs(30)).await;
    let listed = api.get("/api/v1/subscriptions?per_page=1").await;
    assert_eq!(listed["total"].as_i64().unwrap(), created_in_copy);
    assert!(created_in_copy >= before.len() as i64);
    for id in &before {
        let path = format!("/api/v1/subscriptions/{id}");
        let response = api.admin(Method::GET, &path).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{id} acknowledged before the backup"
        );
    }

    // The read models are what a rebuild from the copy's events gives.
    let sample = format!("/api/v1/subscriptions/{}", before[0]);
    let served = api.get(&sample).await;
    let replayed = flowlytix(
        &elsewhere,
        &server_env(&copy_url, &app.key_dir, None),
        &["replay"],
        "",
    )
    .await;
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert_eq!(
        api.get("/api/v1/subscriptions?per_page=1").await["total"],
        listed["total"]
    );
    assert_eq!(api.get(&sample).await, served);
}

/// `flowlytix policies adopt-plans`: a dry run writes nothing; `--apply` gives each plan a
/// policy that its subscriptions follow, with what every license grants unchanged; a
/// second run adopts nothing.
#[tokio::test]
async fn adopt_plans_moves_plan_slugs_onto_policies_dry_run_first_and_once() {
    let app = spawn_app().await;
    let api = app.api();
    let (pro_a, key_a) = api.create_simple(1, "pro", 3).await;
    let (_pro_b, _) = api.create_simple(2, "pro", 3).await;
    let (pro_c, _) = api.create_simple(3, "pro", 5).await;
    let (team, _) = api.create_simple(4, "team", 10).await;
    // A third entitlement on one subscription only: it stays that subscription's own.
    api.put(&pro_c, json!({"features": ["export", "admin"]}))
        .await;
    api.licensing()
        .activate(&key_a, "laptop")
        .await
        .expect_status(StatusCode::CREATED);
    app.wait_for_read_models().await;
    let env = server_env(&app.database_url, &app.key_dir, None);
    let dir = empty_dir();

    let events = app.event_count().await;
    let dry = flowlytix(
        &dir,
        &env,
        &["policies", "adopt-plans", "--product", "desk"],
        "",
    )
    .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    let said = stdout(&dry);
    assert!(said.contains("would make 3 subscription(s) on plan \"pro\" follow policy desk/pro (max_devices 3, entitlements [export]); 1 keep their own device limit, 1 their own extra entitlements"), "{said}");
    assert!(said.contains("dry run: nothing was written"), "{said}");
    assert_eq!(app.event_count().await, events, "a dry run writes nothing");

    let applied = flowlytix(
        &dir,
        &env,
        &["policies", "adopt-plans", "--product", "desk", "--apply"],
        "",
    )
    .await;
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert!(
        stdout(&applied).contains("adopted 4 subscription(s); 0 changed meanwhile"),
        "{}",
        stdout(&applied)
    );
    for (id, limit, entitlements, overrides) in [
        (&pro_a, 3, json!(["export"]), json!([])),
        (
            &pro_c,
            5,
            json!(["admin", "export"]),
            json!(["max_devices"]),
        ),
        (&team, 10, json!(["export"]), json!([])),
    ] {
        let view = api.get(&format!("/api/v1/subscriptions/{id}")).await;
        assert_eq!(view["product_code"], "desk", "{view}");
        assert_eq!(view["max_devices"], limit, "{view}");
        assert_eq!(view["entitlements"], entitlements, "{view}");
        assert_eq!(view["overrides"], overrides, "{view}");
    }
    // The running server still validates the adopted license, granting what it did. On
    // PostgreSQL it hears of the change at once; an embedded server trusts the license it
    // cached for up to a minute after another process wrote to its file (the command line
    // is such a process), so only the terms, which are the same, are checked there.
    let verdict = api.licensing().verdict(&key_a, "laptop").await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["license"]["entitlements"], json!(["export"]));
    if backend() == Backend::Postgres {
        assert_eq!(verdict["license"]["policy_code"], "pro", "{verdict}");
    }

    app.wait_for_read_models().await;
    let again = flowlytix(
        &dir,
        &env,
        &["policies", "adopt-plans", "--product", "desk", "--apply"],
        "",
    )
    .await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing to adopt"),
        "{}",
        stdout(&again)
    );
}
