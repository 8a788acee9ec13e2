//! The culler's sweep at `--culler-leases` live leases (`lease-culler`): the time of its
//! query (`leases::due`, through the partial index `device_leases_due`) and of one whole
//! pass (`Culler::cull`: that query, then `ExpireLeases` on each due subscription and the
//! rows it ended), with the plan that shows the index is used.
//!
//! The due leases are real: `--culler-due` subscriptions of the heartbeat policy, one device
//! each, seeded before anything else of the lease phases, so their deadlines are the
//! earliest. The rest of the live leases are rows inserted here straight into
//! `device_leases` (this is a harness, not the server): random devices and subscriptions,
//! deadlines spread over the ten minutes after the instant of the sweep, marked by a
//! `taken_at` no event gives (`MARKER`) and deleted at the end.
//!
//! The sweep is run in this process, by the server library's own `Culler`, at an instant
//! just past those subscriptions' deadlines (`due_at`, ten minutes after their seeding):
//! the pass is given its `now`, so nothing has to wait. In real time none of these leases
//! is due, so the measured server's own culler finds nothing meanwhile. The expiries the
//! pass records are dated `due_at` (some minutes ahead), after every other measurement.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use flowlytix_projections::leases;
use flowlytix_server::leases::Culler;
use flowlytix_server::store::Db;
use flowlytix_server::App;
use sqlx::Row;
use uuid::Uuid;

use crate::heartbeat::LeasedDevice;
use crate::measure::{percentile_ms, settle, Ctx};
use crate::BoxError;

/// `taken_at` of the inserted rows: no event takes a lease then.
fn marker() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The culler's own limit per pass (`LEASES_PER_PASS` in `src/leases/culler.rs`).
const LEASES_PER_PASS: i64 = 2_000;
/// Times the query is run.
const QUERY_RUNS: usize = 20;
/// Rows per insert statement (7 parameters each, within SQLite's limit).
const ROWS_PER_INSERT: usize = 1_000;

pub struct CullerFigures {
    /// Live leases when the sweep ran, and how many of them were inserted here.
    pub live_leases: i64,
    pub inserted: usize,
    /// Leases the query found due (all of the seeded ones, and nothing else, if right).
    pub due: usize,
    pub due_expected: usize,
    /// The query's times, sorted, in microseconds.
    pub query_us: Vec<u64>,
    /// One whole pass: its time and the expiries it recorded.
    pub pass_ms: f64,
    pub pass_expired: usize,
    /// The plan of the query (PostgreSQL: `explain (analyze, buffers)`; SQLite: `explain
    /// query plan`).
    pub plan: Vec<String>,
}

impl CullerFigures {
    pub fn query_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.query_us, p)
    }
}

pub async fn measure(
    ctx: &Ctx<'_>,
    app: &App,
    seeded: &[LeasedDevice],
    due_at: DateTime<Utc>,
) -> Result<CullerFigures, BoxError> {
    // The seeded leases are written by the server's projector.
    settle(ctx, "lease culler").await;
    if Utc::now() >= due_at {
        return Err("the culler's leases fell due before the sweep (the phases took longer than their lease)".into());
    }
    let inserted = insert_leases(&app.db, ctx.args.culler_leases, due_at).await?;
    let result = sweep(ctx, app, seeded, due_at, inserted).await;
    let removed = remove_leases(&app.db).await;
    let figures = result?;
    removed?;
    Ok(figures)
}

async fn sweep(
    ctx: &Ctx<'_>,
    app: &App,
    seeded: &[LeasedDevice],
    due_at: DateTime<Utc>,
    inserted: usize,
) -> Result<CullerFigures, BoxError> {
    let mut connection = app.db.acquire().await?;
    let live_leases = leases::live_count(connection.conn()).await?;
    let mut query_us = Vec::with_capacity(QUERY_RUNS);
    let mut found = Vec::new();
    for _ in 0..QUERY_RUNS {
        let started = Instant::now();
        found = leases::due(connection.conn(), due_at, LEASES_PER_PASS).await?;
        query_us.push(started.elapsed().as_micros() as u64);
    }
    let first_us = query_us[0];
    query_us.sort_unstable();
    let expected: std::collections::BTreeSet<Uuid> = seeded.iter().map(|d| d.device_id).collect();
    let due = found.len();
    let all_seeded = found.iter().all(|(device, _)| expected.contains(device));
    let plan = plan(&app.db, due_at).await?;
    drop(connection);

    let culler = Culler::new(app.subscriptions.shared_commands(), Duration::from_secs(10));
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    let mut connection = app.db.acquire().await?;
    let started = Instant::now();
    let pass_expired = culler.cull(connection.conn(), due_at, &shutdown).await?;
    let pass_ms = started.elapsed().as_secs_f64() * 1000.0;
    drop(connection);

    let figures = CullerFigures {
        live_leases,
        inserted,
        due,
        due_expected: expected.len(),
        query_us,
        pass_ms,
        pass_expired,
        plan,
    };
    println!(
        "  culler at {} live leases ({} inserted): `due` found {} of {} due{}, {:.2} / {:.2} / {:.2} ms (min / median / max of {QUERY_RUNS}; the first {:.2} ms); one pass {:.1} ms, {} expiries recorded",
        figures.live_leases,
        figures.inserted,
        figures.due,
        figures.due_expected,
        if all_seeded { "" } else { " (SOME NOT SEEDED AS DUE)" },
        figures.query_ms(0.0),
        figures.query_ms(0.5),
        figures.query_ms(1.0),
        first_us as f64 / 1000.0,
        figures.pass_ms,
        figures.pass_expired,
    );
    for line in &figures.plan {
        println!("    plan: {line}");
    }
    if ctx.args.culler_due != figures.due_expected {
        return Err("the culler's leases were not all seeded".into());
    }
    Ok(figures)
}

/// Inserts live leases until `target` are live (none if that many already are), due over
/// the ten minutes after `due_at`, in one transaction; returns how many.
async fn insert_leases(db: &Db, target: usize, due_at: DateTime<Utc>) -> Result<usize, BoxError> {
    let live = {
        let mut connection = db.acquire().await?;
        leases::live_count(connection.conn()).await?
    };
    let n = target.saturating_sub(usize::try_from(live)?);
    let started = Instant::now();
    let rows: Vec<(Uuid, Uuid, DateTime<Utc>)> = (0..n)
        .map(|i| {
            let ahead_ms = 1_000 + (i as i64 * 599_000) / n.max(1) as i64;
            (
                Uuid::new_v4(),
                Uuid::new_v4(),
                due_at + chrono::Duration::milliseconds(ahead_ms),
            )
        })
        .collect();
    flowlytix_projections::with_db!(db, pool => {
        let mut tx = pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "insert into device_leases (device_id, subscription_id, taken_at, expires_at, last_heartbeat_at, borrowed_until, live) ",
            );
            insert.push_values(chunk, |mut row, (device, subscription, expires_at)| {
                row.push_bind(*device)
                    .push_bind(*subscription)
                    .push_bind(marker())
                    .push_bind(*expires_at)
                    .push_bind(None::<DateTime<Utc>>)
                    .push_bind(None::<DateTime<Utc>>)
                    .push_bind(true);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    if let Db::Postgres(pool) = db {
        // What autovacuum's analyze does soon after so many rows; the plan is then the one
        // the culler gets in steady state.
        sqlx::query("analyze device_leases").execute(pool).await?;
    }
    println!(
        "  inserted {n} leases into device_leases ({live} live before) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(n)
}

async fn remove_leases(db: &Db) -> Result<(), BoxError> {
    flowlytix_projections::with_db!(db, pool => {
        sqlx::query("delete from device_leases where taken_at = $1")
            .bind(marker())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The plan of `leases::due`'s statement at `due_at`.
async fn plan(db: &Db, due_at: DateTime<Utc>) -> Result<Vec<String>, BoxError> {
    let statement = "select device_id, subscription_id from device_leases \
                     where live and expires_at <= $1 order by expires_at limit $2";
    Ok(match db {
        Db::Postgres(pool) => {
            // The instant written out: the planner sees what a bound one gives it.
            let explain = format!(
                "explain (analyze, buffers) {}",
                statement
                    .replace(
                        "$1",
                        &format!("'{}'::timestamptz", crate::heartbeat::at(due_at))
                    )
                    .replace("$2", &LEASES_PER_PASS.to_string())
            );
            sqlx::query_scalar::<_, String>(&explain)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(pool) => sqlx::query(&format!("explain query plan {statement}"))
            .bind(due_at)
            .bind(LEASES_PER_PASS)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("detail"))
            .collect::<Result<_, _>>()?,
    })
}
