//! The access log's cost: `GET /livez` and `POST validate` on a server with `ACCESS_LOG=true`
//! and then on one with `ACCESS_LOG=false`, so that validate ÷ livez can be read with it on
//! and off in the same run. Each server is started for the purpose, one at a time, on the
//! same database and keys, with this process's environment (`scripts/bench` gives the bench
//! the server's), and writes its log to a file as the measured server does. The servers'
//! own CPU time is measured, not the main server's.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::api::Bench;
use crate::measure::{Ctx, Phase};
use crate::seed::Seeded;
use crate::{phases, BoxError};

/// The four phases, under these keys: `livez_access_log_on`, `validate_access_log_on`,
/// `livez_access_log_off`, `validate_access_log_off`.
pub async fn phases(ctx: &Ctx<'_>, seeded: &Seeded) -> Result<Vec<Phase>, BoxError> {
    let mut measured = Vec::new();
    for (setting, livez, validate) in [
        (
            "true",
            ("GET /livez, access log on", "livez_access_log_on"),
            ("POST validate, access log on", "validate_access_log_on"),
        ),
        (
            "false",
            ("GET /livez, access log off", "livez_access_log_off"),
            ("POST validate, access log off", "validate_access_log_off"),
        ),
    ] {
        let mut server = start_server(
            ctx,
            &format!("access-log-{setting}"),
            &[("ACCESS_LOG", setting)],
        )
        .await?;
        let args = crate::Args {
            server_pid: server.id(),
            ..ctx.args.clone()
        };
        let bench = Bench {
            client: ctx.bench.client.clone(),
            base: format!("http://127.0.0.1:{}", server.port),
            token: ctx.bench.token.clone(),
            run_id: ctx.bench.run_id.clone(),
        };
        let on_it = Ctx {
            args: &args,
            bench: &bench,
            baseline: ctx.baseline,
        };
        let result = async {
            let mut first = phases::livez(&on_it).await?;
            (first.name, first.key) = livez;
            let mut second = phases::validate(&on_it, seeded).await?;
            (second.name, second.key) = validate;
            Ok::<_, BoxError>([first, second])
        }
        .await;
        let _ = server.child.start_kill();
        let _ = server.child.wait().await;
        measured.extend(result?);
    }
    Ok(measured)
}

pub struct Server {
    pub child: tokio::process::Child,
    pub port: u16,
}

impl Server {
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops it and waits for it to end.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `flowlytix serve` on a free port with this process's environment and `env` on top, in a
/// directory of its own named after `label`; returns once `/livez` answers.
pub async fn start_server(
    ctx: &Ctx<'_>,
    label: &str,
    env: &[(&str, &str)],
) -> Result<Server, BoxError> {
    let bin = crate::replay::server_bin(ctx.args)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // A directory of its own, as scripts/bench gives the measured server: no `.env` of the
    // checkout is read.
    let dir = std::env::temp_dir().join(format!("flowlytix-bench-{label}-{}", ctx.bench.run_id));
    std::fs::create_dir_all(&dir)?;
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let child = tokio::process::Command::new(&bin)
        .arg("serve")
        .current_dir(&dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let url = format!("http://127.0.0.1:{port}/livez");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let live = ctx.bench.client.get(&url).send().await;
        if live.is_ok_and(|r| r.status().is_success()) {
            println!(
                "  server ({label}) on port {port}, its log in {}",
                log_path.display()
            );
            return Ok(Server { child, port });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "the server ({label}) did not come up; see {}",
        log_path.display()
    )
    .into())
}
