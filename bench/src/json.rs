//! `--json FILE`: every figure of a run, machine-readably.

use serde_json::{json, Map, Value};

use crate::machine::mb;
use crate::measure::Phase;
use crate::policy::Propagation;
use crate::report::Report;

fn phase(p: &Phase) -> Value {
    json!({
        "key": p.key,
        "name": p.name,
        "requests": p.requests(),
        "seconds": p.elapsed.as_secs_f64(),
        "req_per_s": p.throughput(),
        "p50_ms": p.percentile_ms(0.50),
        "p99_ms": p.percentile_ms(0.99),
        "max_ms": p.max_ms(),
        "errors": p.errors,
        "error_kinds": p.error_kinds,
        "server_cpu_us_per_request": p.server_cpu_us(),
        "bench_cpu_us_per_request": p.bench_cpu_us(),
    })
}

/// Ratio keys: `<numerator>_over_<denominator>`, 0 mapped to null (a phase did not run).
fn ratios(report: &Report) -> Map<String, Value> {
    Report::RATIOS
        .iter()
        .map(|(_, a, b)| {
            let ratio = report.ratio(a, b);
            let value = if ratio > 0.0 {
                json!(ratio)
            } else {
                Value::Null
            };
            (format!("{a}_over_{b}"), value)
        })
        .collect()
}

/// The table, figure by figure (null where the run did not measure it).
fn headline(report: &Report) -> Value {
    let activate = report.phase("activate");
    let ratio = |a, b| Some(report.ratio(a, b)).filter(|r| *r > 0.0);
    json!({
        "activate_over_db_insert": ratio("activate", "db_insert"),
        "activate_p99_ms": activate.map(|p| p.percentile_ms(0.99)),
        "activate_server_cpu_ms": activate.and_then(Phase::server_cpu_us).map(|us| us / 1000.0),
        "catch_up_seconds": report.catch_up_secs,
        "replay_events_per_second": report
            .replay
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .and_then(|r| r.events_per_second),
        "validate_over_livez": ratio("validate", "livez"),
        "validate_over_livez_access_log_on": ratio("validate_access_log_on", "livez_access_log_on"),
        "validate_over_livez_access_log_off": ratio("validate_access_log_off", "livez_access_log_off"),
        "rss_after_seed_mb": report.memory_after_seed.map(|m| mb(m.rss)),
        "projection_lag_p50_ms": report.lag.as_ref().map(|l| l.p50_ms()),
        "projection_lag_p99_ms": report.lag.as_ref().map(|l| l.p99_ms()),
        "long_history_over_fresh": ratio("activate_fresh_history", "activate_long_history"),
        "validate_second_over_livez_second": ratio("validate_second", "livez_second"),
        "validate_policy_over_livez_second": ratio("validate_policy", "livez_second"),
        "validate_second_server_cpu_us": report.phase("validate_second").and_then(Phase::server_cpu_us),
        "validate_policy_server_cpu_us": report.phase("validate_policy").and_then(Phase::server_cpu_us),
        "policy_propagation_ms": report.propagation.as_ref().and_then(|p| p.visible_ms()).filter(|ms| !ms.is_empty()).map(|ms| json!({
            "min": ms.first(),
            "median": ms[ms.len() / 2],
            "max": ms.last(),
        })),
    })
}

fn propagation(p: &Propagation) -> Value {
    json!({
        "followers": p.followers,
        "observer": p.observer,
        "changes": p.changes.iter().map(|c| json!({
            "action": c.action,
            "expected": c.expected,
            "command_ms": c.command_ms,
            "visible_ms": c.visible_ms,
            "visible_after_return_ms": c.visible_after_return_ms,
            "validations": c.polls,
            "events_appended": c.events_appended,
            "events_before": c.events_before,
            "events_after": c.events_after,
        })).collect::<Vec<_>>(),
    })
}

pub fn render(report: &Report) -> Value {
    json!({
        "date": report.run.date,
        "machine": report.run.machine_at_start,
        "load_average_at_end": crate::machine::load_average(),
        "server": report.run.server,
        "settings": report.run.settings,
        "seed": report.run.seed,
        "seed_catch_up_seconds": report.seed_catch_up_secs,
        "figures": headline(report),
        "phases": report.phases.iter().map(phase).collect::<Vec<_>>(),
        "ratios": ratios(report),
        "projection_lag_ms": report.lag.as_ref().map(|l| json!({
            "samples": l.samples_us.len(),
            "p50": l.p50_ms(),
            "p99": l.p99_ms(),
            "max": l.max_ms(),
            "gave_up": l.gave_up,
            "errors": l.errors,
        })),
        "catch_up_seconds": report.catch_up_secs,
        "activate_long_history": report.history_events.as_ref().map(|events| json!({
            "prior_events": events.long_before,
            "events_after": events.long_after,
            "fresh_events_after": events.fresh_after,
            "fresh_over_long": Some(report.ratio("activate_fresh_history", "activate_long_history")).filter(|r| *r > 0.0),
        })),
        "replay": report.replay.as_ref().map(|r| match r {
            Ok(r) => json!({
                "events": r.events,
                "events_per_second": r.events_per_second,
                "wall_seconds": r.wall_secs,
                "wall_events_per_second": r.wall_events_per_second(),
                "folding_seconds": r.phases.map(|p| p[0]),
                "writing_seconds": r.phases.map(|p| p[1]),
                "catching_up_seconds": r.phases.map(|p| p[2]),
            }),
            Err(error) => json!({"error": error}),
        }),
        "policy_propagation": report.propagation.as_ref().map(propagation),
        "heartbeat": report.heartbeat.as_ref().map(|h| json!({
            "devices": h.devices,
            "token": h.token_choice,
            "heartbeat_over_validate": Some(report.ratio("heartbeat", "validate_heartbeat_set")).filter(|r| *r > 0.0),
            "server_cpu_us_per_heartbeat": report.phase("heartbeat").and_then(Phase::server_cpu_us),
            "server_cpu_us_per_validate": report.phase("validate_heartbeat_set").and_then(Phase::server_cpu_us),
            "events_before": h.events_before,
            "events_after": h.events_after,
        })),
        "lease_culler": report.culler.as_ref().map(|c| json!({
            "live_leases": c.live_leases,
            "inserted": c.inserted,
            "due_found": c.due,
            "due_expected": c.due_expected,
            "due_query_ms": {
                "min": c.query_ms(0.0),
                "median": c.query_ms(0.5),
                "max": c.query_ms(1.0),
                "runs": c.query_us.len(),
            },
            "pass_ms": c.pass_ms,
            "pass_expired": c.pass_expired,
            "plan": c.plan,
        })),
        "server_memory_mb": {
            "rss_after_seed": report.memory_after_seed.map(|m| mb(m.rss)),
            "rss_end": report.memory_end.map(|m| mb(m.rss)),
            "peak": report.memory_end.map(|m| mb(m.peak)),
        },
    })
}
