//! Subscriptions that follow a licensing policy (issue 22's "Speed"):
//!
//! - `validate-policy`: validation of licenses whose subscriptions follow a policy, measured
//!   exactly as `validate` is, beside `/livez` and the plain validate set on the same server;
//! - `policy-propagation`: how long a change of the policy (one event, no event per
//!   subscription) takes to reach another instance's validation.
//!
//! Both run after every other phase, on a set of their own: one policy made for the run and
//! `--subscriptions` subscriptions that follow it, seeded in-process as the validate set is
//! (`direct::licenses`), so the other phases see the same data as before they existed.
//!
//! They run on a second server, started for them on the same database once the policy and
//! its followers exist. The measured server could not serve them on the embedded store: a
//! policy this process creates reaches another instance only through PostgreSQL's notices
//! (migration 0016), and an embedded server reads the policies at start. On a second server
//! `/livez`, the plain validate set and the followers are measured back to back with that
//! server's own CPU, so the three figures compare on one process with equally cold caches.
//!
//! What a cold validation costs in queries, from the code (`Licensing::judge_credential`;
//! not counted by a test): a license key is found by one select on the event log
//! (`Lookup::subscription_by_key_hash`, skipped once the key is in its index), then the
//! subscription is read by one statement, its snapshot and the events after it
//! (`stream::snapshot_and_tail`; one `events_after` catch-up instead when the aggregate
//! cache holds it). A follower's policy terms come from the in-memory book
//! (`Policies::book`): no query. So two queries for a follower as for a subscription of its
//! own, and none for either once its license is cached.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::{Code, Plan, PolicyCommand, PolicyId, PolicySettings, ProductId};
use flowlytix_server::licensing::{fingerprint_hash, Credential, Scope};
use flowlytix_server::App;
use reqwest::StatusCode;
use serde_json::json;

use crate::access_log::start_server;
use crate::api::Bench;
use crate::direct::{self, Follow};
use crate::measure::{finish, problem_code, settle, Ctx, Phase};
use crate::seed::{Seeded, SeededLicense};
use crate::{lag, phases, BoxError, PhaseKind};

/// The entitlement the propagation phase detaches and attaches again.
pub const ENTITLEMENT: &str = "bench-propagation";

/// The policy made for the run.
pub struct BenchPolicy {
    pub id: PolicyId,
    /// `<product code>/<policy code>`.
    pub name: String,
    pub code: Code,
}

/// One change of the policy in the propagation phase.
pub struct Change {
    /// `detach` or `attach`.
    pub action: &'static str,
    /// The answer looked for: `ENTITLEMENTS_MISSING` or `VALID`.
    pub expected: &'static str,
    /// `Policies::run` itself (load, decide, append, commit).
    pub command_ms: f64,
    /// From the command's start (an upper bound of its commit) to the first answer that
    /// showed the change; `None` when none did within the limit.
    pub visible_ms: Option<f64>,
    /// From the command's return (after its commit: a lower bound) to that answer.
    pub visible_after_return_ms: Option<f64>,
    /// Validations sent until one showed it.
    pub polls: u64,
    /// Events the command appended.
    pub events_appended: usize,
    /// Rows of the events table before and after the change.
    pub events_before: u64,
    pub events_after: u64,
}

/// What the propagation phase found.
pub struct Propagation {
    /// Subscriptions following the policy.
    pub followers: usize,
    /// Where the change was looked for: another server (PostgreSQL) or the writer itself.
    pub observer: &'static str,
    pub changes: Vec<Change>,
}

impl Propagation {
    /// Milliseconds from each command's start to its change's first sighting, sorted; `None`
    /// when one was never seen.
    pub fn visible_ms(&self) -> Option<Vec<f64>> {
        let mut all: Vec<f64> = self
            .changes
            .iter()
            .map(|c| c.visible_ms)
            .collect::<Option<_>>()?;
        all.sort_by(f64::total_cmp);
        Some(all)
    }
}

pub struct PolicyFigures {
    pub phases: Vec<Phase>,
    pub propagation: Option<Propagation>,
}

/// Makes the policy and its followers, starts a second server, and runs the policy phases
/// that were asked for on it.
pub async fn phases(ctx: &Ctx<'_>, seeded: &Seeded, app: &App) -> Result<PolicyFigures, BoxError> {
    let wants = |kind: PhaseKind| ctx.args.phases.contains(&kind);
    let args = ctx.args;
    let policy = create(app, &ctx.bench.run_id, args.devices_per_subscription).await?;
    println!(
        "policy phases: policy {} ({}), seeding {} subscriptions that follow it",
        policy.name, policy.id, args.subscriptions
    );
    let started = Instant::now();
    let follow = Follow {
        policy_id: policy.id,
        plan: Plan::from(&policy.code),
    };
    let followers = direct::licenses(app, args, &ctx.bench.run_id, "p", Some(&follow)).await?;
    let seeded_in = started.elapsed();
    println!(
        "  seeded {} followers in {:.1} s",
        followers.len(),
        seeded_in.as_secs_f64()
    );
    let caught_up = lag::catch_up(
        ctx.bench,
        started + seeded_in,
        Duration::from_secs(args.catch_up_timeout_secs),
    )
    .await;
    println!(
        "  read models {}",
        caught_up.map_or_else(
            || "did NOT catch up with the followers".to_owned(),
            |s| format!("caught up with the followers {s:.1} s after their seeding")
        )
    );

    let server = start_server(ctx, "policy", &[]).await?;
    let second_args = crate::Args {
        server_pid: server.id(),
        ..args.clone()
    };
    let second = Bench {
        client: ctx.bench.client.clone(),
        base: format!("http://127.0.0.1:{}", server.port),
        token: ctx.bench.token.clone(),
        run_id: ctx.bench.run_id.clone(),
    };
    let on_second = Ctx {
        args: &second_args,
        bench: &second,
        baseline: ctx.baseline,
    };
    let result = async {
        let mut measured = Vec::new();
        if wants(PhaseKind::ValidatePolicy) {
            measured = validate_phases(&on_second, seeded, &followers, &policy).await?;
        }
        let propagation = if wants(PhaseKind::PolicyPropagation) {
            Some(propagation(&on_second, app, &policy, &followers).await?)
        } else {
            None
        };
        Ok::<_, BoxError>(PolicyFigures {
            phases: measured,
            propagation,
        })
    }
    .await;
    server.stop().await;
    result
}

/// The policy for the run: product `bench`, code `bench-<run id>`, the seeded device count,
/// perpetual, the plain set's entitlements and `ENTITLEMENT`.
async fn create(app: &App, run_id: &str, devices: u32) -> Result<BenchPolicy, BoxError> {
    let product_code = Code::parse("bench")?;
    let code = Code::parse(&format!("bench-{run_id}"))?;
    let product_id = ProductId::for_code(&product_code);
    let id = PolicyId::for_code(product_id, &code);
    let settings: PolicySettings = serde_json::from_value(json!({
        "name": "Bench policy",
        "max_devices": devices,
        "entitlements": ["export", "sync", ENTITLEMENT],
    }))?;
    let name = format!("{}/{}", product_code.as_str(), code.as_str());
    app.policies
        .run(
            id,
            vec![PolicyCommand::Create {
                product_id,
                product_code,
                code: code.clone(),
                settings,
                at: Utc::now(),
            }],
            direct::metadata(),
            None,
        )
        .await?;
    Ok(BenchPolicy { id, name, code })
}

fn bodies(licenses: &[SeededLicense]) -> Result<Vec<Bytes>, BoxError> {
    let mut bodies = Vec::new();
    for (key, fingerprints) in licenses {
        for fingerprint in fingerprints {
            let body = json!({"license_key": key, "fingerprint": fingerprint});
            bodies.push(Bytes::from(serde_json::to_vec(&body)?));
        }
    }
    Ok(bodies)
}

/// `/livez`, the plain validate set and the followers, on the second server.
async fn validate_phases(
    ctx: &Ctx<'_>,
    seeded: &Seeded,
    followers: &[SeededLicense],
    policy: &BenchPolicy,
) -> Result<Vec<Phase>, BoxError> {
    let follower_bodies = bodies(followers)?;
    // The server judges the followers by the policy: a validation says which one.
    let (key, fingerprints) = followers.first().ok_or("no follower seeded")?;
    let answer = validate_http(ctx.bench, key, &fingerprints[0], None).await?;
    let follows = format!(r#""policy_code":"{}""#, policy.code.as_str());
    if !crate::measure::contains(&answer, follows.as_bytes()) {
        return Err(format!(
            "the second server does not judge a follower by its policy: {}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    let mut livez = phases::livez(ctx).await?;
    (livez.name, livez.key) = ("GET /livez, second server", "livez_second");
    let plain = phases::validate_set(
        ctx,
        "POST validate, second server",
        "validate_second",
        &seeded.validate_bodies,
    )
    .await?;
    let policy = phases::validate_set(
        ctx,
        "POST validate, followers",
        "validate_policy",
        &follower_bodies,
    )
    .await?;
    Ok(vec![livez, plain, policy])
}

/// A validation with `scope: {"entitlements": [entitlement]}` when one is given: the
/// answer's body.
async fn validate_http(
    bench: &Bench,
    key: &str,
    fingerprint: &str,
    entitlement: Option<&str>,
) -> Result<Bytes, BoxError> {
    let mut body = json!({"license_key": key, "fingerprint": fingerprint});
    if let Some(entitlement) = entitlement {
        body["scope"] = json!({"entitlements": [entitlement]});
    }
    let response = bench
        .client
        .post(format!("{}/api/v1/licensing/validate", bench.base))
        .json(&body)
        .send()
        .await;
    Ok(finish(response, StatusCode::OK).await?)
}

/// Whom the propagation phase asks: another server over HTTP (PostgreSQL), or the writer's
/// own validation in this process (the embedded store has one instance).
enum Observer<'a> {
    Server(&'a Bench),
    Writer(&'a App),
}

impl Observer<'_> {
    /// The code of a scoped validation of (key, fingerprint).
    async fn code(&self, key: &str, fingerprint: &str) -> Result<String, BoxError> {
        match self {
            Self::Server(bench) => {
                let body = validate_http(bench, key, fingerprint, Some(ENTITLEMENT)).await?;
                Ok(problem_code(&body))
            }
            Self::Writer(app) => {
                let scope = Scope {
                    entitlements: vec![ENTITLEMENT.to_owned()],
                    ..Scope::default()
                };
                let verdict = app
                    .licensing
                    .validate(
                        Credential::LicenseKey(LicenseKey::parse(key)?),
                        fingerprint_hash(fingerprint)?,
                        &scope,
                        Utc::now(),
                    )
                    .await?;
                Ok(verdict.code.as_str().to_owned())
            }
        }
    }

    /// Asks until the answer is `expected`, for at most `limit`: the answers asked for.
    async fn until(
        &self,
        key: &str,
        fingerprint: &str,
        expected: &str,
        limit: Duration,
    ) -> Result<Option<u64>, BoxError> {
        let started = Instant::now();
        let mut polls = 0;
        loop {
            polls += 1;
            if self.code(key, fingerprint).await? == expected {
                return Ok(Some(polls));
            }
            if started.elapsed() > limit {
                return Ok(None);
            }
        }
    }
}

/// How long a policy change takes to reach validation: `--propagation-changes` changes,
/// detaching `ENTITLEMENT` and attaching it again in turn, each timed from the command to
/// the first validation of a follower (scoped to that entitlement) that shows it.
async fn propagation(
    ctx: &Ctx<'_>,
    app: &App,
    policy: &BenchPolicy,
    followers: &[SeededLicense],
) -> Result<Propagation, BoxError> {
    let postgres = !ctx.args.database_url.starts_with("sqlite:");
    let observer = if postgres {
        Observer::Server(ctx.bench)
    } else {
        Observer::Writer(app)
    };
    settle(ctx, "policy propagation").await;
    let (key, fingerprints) = followers.first().ok_or("no follower seeded")?;
    let fingerprint = &fingerprints[0];
    let limit = Duration::from_secs(10);
    // The follower's license is cached before the first change (as a busy license is).
    if observer
        .until(key, fingerprint, "VALID", limit)
        .await?
        .is_none()
    {
        return Err("a follower does not validate with the policy's entitlement".into());
    }
    let entitlement = Code::parse(ENTITLEMENT)?;
    let mut changes = Vec::new();
    for n in 0..ctx.args.propagation_changes {
        let detach = n % 2 == 0;
        let (action, expected, command) = if detach {
            (
                "detach",
                "ENTITLEMENTS_MISSING",
                PolicyCommand::DetachEntitlements {
                    codes: vec![entitlement.clone()],
                    at: Utc::now(),
                },
            )
        } else {
            (
                "attach",
                "VALID",
                PolicyCommand::AttachEntitlements {
                    codes: vec![entitlement.clone()],
                    at: Utc::now(),
                },
            )
        };
        let events_before = ctx.baseline.count_events().await?;
        let started = Instant::now();
        let committed = app
            .policies
            .run(policy.id, vec![command], direct::metadata(), None)
            .await?;
        let returned = Instant::now();
        let polls = observer.until(key, fingerprint, expected, limit).await?;
        let seen = Instant::now();
        let events_after = ctx.baseline.count_events().await?;
        let ms = |from: Instant| (seen - from).as_secs_f64() * 1000.0;
        let change = Change {
            action,
            expected,
            command_ms: (returned - started).as_secs_f64() * 1000.0,
            visible_ms: polls.map(|_| ms(started)),
            visible_after_return_ms: polls.map(|_| ms(returned)),
            polls: polls.unwrap_or(0),
            events_appended: committed.events.len(),
            events_before,
            events_after,
        };
        println!(
            "  policy change {}: {action} {ENTITLEMENT}: {} event(s) appended (events {} -> {}), command {:.1} ms, {expected} {} ({} validations)",
            n + 1,
            change.events_appended,
            change.events_before,
            change.events_after,
            change.command_ms,
            change.visible_ms.map_or_else(
                || format!("NOT seen within {} s", limit.as_secs()),
                |v| format!("seen {v:.1} ms after the command's start")
            ),
            change.polls
        );
        changes.push(change);
        // Changes a little apart, as an admin's are.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Propagation {
        followers: followers.len(),
        observer: if postgres {
            "a second server (PostgreSQL notices)"
        } else {
            "the writing instance itself (embedded: one instance)"
        },
        changes,
    })
}
