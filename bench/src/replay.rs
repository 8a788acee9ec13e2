//! `flowlytix replay` against the bench's database, while the server keeps serving (the
//! replay rebuilds the read models aside and swaps them in).
//!
//! The figure is the command's own: it logs `events` and `events_per_second` (events
//! folded and written, over the replay proper) when it ends. The wall-clock time of the
//! whole process (start-up and migrations check included) is reported beside it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::{Args, BoxError};

pub struct ReplayFigures {
    /// Events the command says it replayed (or, if its log says nothing, the log's size).
    pub events: u64,
    /// The command's own rate.
    pub events_per_second: Option<f64>,
    /// The whole process, start to exit.
    pub wall_secs: f64,
    /// The command's own phase times (folding the log, writing the rows, catching up and
    /// committing the swap), in seconds, when its log gives them.
    pub phases: Option<[f64; 3]>,
}

impl ReplayFigures {
    pub fn wall_events_per_second(&self) -> f64 {
        self.events as f64 / self.wall_secs.max(1e-6)
    }
}

/// The server binary: `--server-bin`, or `flowlytix` beside this executable.
pub fn server_bin(args: &Args) -> Result<PathBuf, BoxError> {
    if let Some(bin) = &args.server_bin {
        return Ok(bin.clone());
    }
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("flowlytix"))
}

pub async fn run(args: &Args, events_in_log: u64) -> Result<ReplayFigures, BoxError> {
    let bin = server_bin(args)?;
    println!(
        "  running {} replay ({events_in_log} events in the log)",
        bin.display()
    );
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .arg("replay")
        .env("DATABASE_URL", &args.database_url)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut stderr = child.stderr.take().ok_or("replay: no stderr")?;
    let mut log = String::new();
    let limit = Duration::from_secs(args.replay_timeout_secs);
    let status = tokio::time::timeout(limit, async {
        stderr.read_to_string(&mut log).await?;
        child.wait().await
    })
    .await
    .map_err(|_| format!("replay did not end within {} s", limit.as_secs()))??;
    let wall_secs = started.elapsed().as_secs_f64();
    let log = strip_ansi(&log);
    if !status.success() {
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        return Err(format!("replay failed ({status}): {}", tail.join(" | ")).into());
    }
    let done = log
        .lines()
        .rev()
        .find(|line| line.contains("events_per_second"));
    Ok(ReplayFigures {
        events: done
            .and_then(|line| field(line, "events"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(events_in_log),
        events_per_second: done
            .and_then(|line| field(line, "events_per_second"))
            .and_then(|v| v.parse().ok()),
        wall_secs,
        phases: done.and_then(|line| {
            let seconds = |name| field(line, name)?.parse::<f64>().ok();
            Some([
                seconds("folding_seconds")?,
                seconds("writing_seconds")?,
                seconds("catching_up_seconds")?,
            ])
        }),
    })
}

/// The value of `name=value` (or `name="value"`) in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        .map(|value| value.trim_matches('"'))
}

/// Drops terminal colour sequences (`ESC [ … m`), in case the log has them anyway.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_replay_summary_line() {
        let line = "\u{1b}[2m2026-11-29T11:56:05Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m read models rebuilt from the event store \u{1b}[3mevents\u{1b}[0m\u{1b}[2m=\u{1b}[0m9415 caught_up=0 parked=0 seconds=\"27.0\" events_per_second=\"346\"";
        let line = strip_ansi(line);
        assert_eq!(field(&line, "events"), Some("9415"));
        assert_eq!(field(&line, "events_per_second"), Some("346"));
        assert_eq!(field(&line, "seconds"), Some("27.0"));
        assert_eq!(field(&line, "missing"), None);
    }
}
