//! What a run found, printed as tables.

use crate::culler::CullerFigures;
use crate::heartbeat::HeartbeatFigures;
use crate::lag::LagFigures;
use crate::machine::{mb, Memory};
use crate::measure::Phase;
use crate::policy::Propagation;
use crate::replay::ReplayFigures;

/// What the run was: when, where, against what, with which settings.
pub struct RunInfo {
    pub date: String,
    pub machine_at_start: serde_json::Value,
    pub server: serde_json::Value,
    pub settings: serde_json::Value,
    pub seed: serde_json::Value,
}

/// Events on the activate-history phases' subscriptions.
pub struct HistoryEvents {
    /// The long history, when its phase began.
    pub long_before: u64,
    pub long_after: u64,
    /// The fresh subscription, when its phase ended.
    pub fresh_after: u64,
}

pub struct Report {
    pub run: RunInfo,
    pub phases: Vec<Phase>,
    /// Projection lag sampled during the activate phase.
    pub lag: Option<LagFigures>,
    /// Seconds the read models took to catch up after the activate phase.
    pub catch_up_secs: Option<f64>,
    /// The server's memory once the seeding had been projected, and at the end.
    pub memory_after_seed: Option<Memory>,
    pub memory_end: Option<Memory>,
    /// Seconds the read models took to catch up after the seeding ended.
    pub seed_catch_up_secs: Option<f64>,
    pub history_events: Option<HistoryEvents>,
    /// The replay's figures, or why it failed.
    pub replay: Option<Result<ReplayFigures, String>>,
    /// How long policy changes took to reach validation.
    pub propagation: Option<Propagation>,
    /// The heartbeat set, and the events table around its heartbeat phase.
    pub heartbeat: Option<HeartbeatFigures>,
    /// The culler's sweep.
    pub culler: Option<CullerFigures>,
}

fn us(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

impl Report {
    pub fn phase(&self, key: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.key == key)
    }

    pub fn throughput(&self, key: &str) -> f64 {
        self.phase(key).map_or(0.0, Phase::throughput)
    }

    /// Throughput of phase `a` over phase `b`; 0 when `b` did not run.
    pub fn ratio(&self, a: &str, b: &str) -> f64 {
        let below = self.throughput(b);
        if below > 0.0 {
            self.throughput(a) / below
        } else {
            0.0
        }
    }

    /// The ratios printed and written, as (label, numerator key, denominator key).
    pub const RATIOS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("validate / livez", "validate", "livez"),
        (
            "validate / livez, access log on",
            "validate_access_log_on",
            "livez_access_log_on",
        ),
        (
            "validate / livez, access log off",
            "validate_access_log_off",
            "livez_access_log_off",
        ),
        (
            "validate / livez, second server",
            "validate_second",
            "livez_second",
        ),
        (
            "validate-policy / livez, second server",
            "validate_policy",
            "livez_second",
        ),
        (
            "validate-policy / validate, second server",
            "validate_policy",
            "validate_second",
        ),
        (
            "heartbeat / validate by token, same devices",
            "heartbeat",
            "validate_heartbeat_set",
        ),
        ("activate / livez", "activate", "livez"),
        (
            "validate / DB select rm_subscriptions",
            "validate",
            "db_select_rm",
        ),
        (
            "validate / DB select events by key",
            "validate",
            "db_select_events",
        ),
        ("activate / DB insert scratch row", "activate", "db_insert"),
        // Time per activation on a long history over the same on a fresh subscription.
        (
            "activate: fresh / long history (x slower)",
            "activate_fresh_history",
            "activate_long_history",
        ),
    ];

    pub fn print(&self) {
        println!();
        println!(
            "{:<28} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7}",
            "phase", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
        );
        for p in &self.phases {
            println!(
                "{:<28} {:>9} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                p.name,
                p.requests(),
                p.throughput(),
                p.percentile_ms(0.50),
                p.percentile_ms(0.99),
                p.max_ms(),
                p.errors
            );
        }
        println!();
        println!(
            "{:<28} {:>14} {:>14}",
            "CPU per request (us)", "server", "bench"
        );
        for p in &self.phases {
            println!(
                "{:<28} {:>14} {:>14}",
                p.name,
                us(p.server_cpu_us()),
                us(p.bench_cpu_us())
            );
        }
        for p in &self.phases {
            for (kind, n) in &p.error_kinds {
                println!("  {} error: {kind} x{n}", p.name);
            }
        }
        println!();
        for (label, a, b) in Self::RATIOS {
            println!("{label:<44} {:>6.3}", self.ratio(a, b));
        }
        if let Some(events) = &self.history_events {
            println!(
                "  (events: long history {} -> {}, fresh subscription -> {} by the end of their phases)",
                events.long_before, events.long_after, events.fresh_after
            );
        }
        if let Some(lag) = &self.lag {
            println!();
            println!(
                "projection lag under load (ms)               p50 {:.1}, p99 {:.1}, max {:.1} ({} samples, {} gave up)",
                lag.p50_ms(),
                lag.p99_ms(),
                lag.max_ms(),
                lag.samples_us.len(),
                lag.gave_up
            );
            println!(
                "read models caught up after activate        {}",
                self.catch_up_secs.map_or_else(
                    || "not within the limit".to_owned(),
                    |s| format!("{s:.2} s")
                )
            );
        }
        if let Some(Err(error)) = &self.replay {
            println!();
            println!("flowlytix replay                            FAILED: {error}");
        }
        if let Some(Ok(replay)) = &self.replay {
            println!();
            println!(
                "flowlytix replay (events/s)                 {} ({} events; {:.0}/s over the whole process, {:.1} s)",
                replay
                    .events_per_second
                    .map_or_else(|| "?".to_owned(), |r| format!("{r:.0}")),
                replay.events,
                replay.wall_events_per_second(),
                replay.wall_secs
            );
        }
        if let Some(propagation) = &self.propagation {
            println!();
            println!(
                "policy change -> validation ({} followers, seen by {})",
                propagation.followers, propagation.observer
            );
            for c in &propagation.changes {
                println!(
                    "  {:<7} {:>3} event(s) (events {} -> {}), command {:.1} ms, seen {} ms after its start ({} ms after its return)",
                    c.action,
                    c.events_appended,
                    c.events_before,
                    c.events_after,
                    c.command_ms,
                    us(c.visible_ms),
                    us(c.visible_after_return_ms)
                );
            }
            match propagation.visible_ms() {
                Some(ms) if !ms.is_empty() => println!(
                    "  min / median / max {:.1} / {:.1} / {:.1} ms",
                    ms[0],
                    ms[ms.len() / 2],
                    ms[ms.len() - 1]
                ),
                _ => println!("  a change was NOT seen within the limit"),
            }
        }
        if let Some(heartbeat) = &self.heartbeat {
            println!();
            let cpu = self.phase("heartbeat").and_then(Phase::server_cpu_us).zip(
                self.phase("validate_heartbeat_set")
                    .and_then(Phase::server_cpu_us),
            );
            println!(
                "heartbeats ({} devices; each sends {})",
                heartbeat.devices, heartbeat.token_choice
            );
            println!(
                "  heartbeat / validate by token: {:.3} (target >= 0.8); server CPU per heartbeat / per validate: {} (target <= 1.5)",
                self.ratio("heartbeat", "validate_heartbeat_set"),
                cpu.map_or_else(
                    || "-".to_owned(),
                    |(h, v)| format!("{h:.1} / {v:.1} us = {:.2}", h / v)
                )
            );
            println!(
                "  events table before / after the heartbeat phase: {} / {}",
                heartbeat.events_before, heartbeat.events_after
            );
        }
        if let Some(culler) = &self.culler {
            println!();
            println!(
                "lease culler at {} live leases: due query {:.2} ms median (min {:.2}, max {:.2}), {} of {} due found; one pass {:.1} ms, {} expired",
                culler.live_leases,
                culler.query_ms(0.5),
                culler.query_ms(0.0),
                culler.query_ms(1.0),
                culler.due,
                culler.due_expected,
                culler.pass_ms,
                culler.pass_expired
            );
        }
        if let Some(after_seed) = self.memory_after_seed {
            println!();
            print!(
                "server RSS after seeding (MB)               {:.1}",
                mb(after_seed.rss)
            );
            match self.memory_end {
                Some(end) => println!("; at the end {:.1}, peak {:.1}", mb(end.rss), mb(end.peak)),
                None => println!(),
            }
        }
    }
}
