//! The `flowlytix` command line. Only `serve` and `migrate` create the store and the keys;
//! every other command works on the server's own (found through the server's environment)
//! and refuses when they are missing. Each prints a one-line result.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use flowlytix_aggregates::Role;

use flowlytix_projections::replay::ReplayProgress;

use crate::app::StartError;
use crate::auth::accounts::{self, AdminChange};
use crate::config::Config;
use crate::keys::{absolute, IfMissing, JwtKeys, KeyError};
use crate::store::{self, EventMetadata};

mod adopt_plans;
mod backup;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] store::OpenError),
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
    #[error("replay failed")]
    Replay(#[source] flowlytix_projections::ProjectionError),
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
    #[error(transparent)]
    Adopt(#[from] adopt_plans::AdoptError),
    #[error("the two passwords differ; nothing was changed")]
    PasswordsDiffer,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Parser)]
#[command(name = "flowlytix", version, about = "Flowlytix Subscription Server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Rebuild every read model from the event store alone, in commit order, while servers
    /// keep serving: the rebuild happens in memory and is swapped in atomically.
    Replay,
    /// The event log.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Manage admin users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Licensing policies.
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
    /// Copy the embedded store to FILE while the server serves: a consistent snapshot,
    /// events and read models together (SQLite's VACUUM INTO). On PostgreSQL use pg_dump
    /// or a base backup with WAL archiving (docs/operations.md).
    Backup {
        /// Where to write the copy; must not exist yet.
        file: PathBuf,
    },
}

impl Command {
    /// Whether this command runs the server (whose errors go to its log, not a terminal).
    pub fn serves(command: Option<&Command>) -> bool {
        matches!(command, None | Some(Command::Serve))
    }
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an admin user. The password is typed without echo on a terminal, else read
    /// from standard input (one line): it never appears in the process list or history.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
    },
    /// Give an admin another role. Their sessions end.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Set a new password, read as for `create`. Their sessions end.
    SetPassword {
        #[arg(long)]
        email: String,
    },
    /// Disable an admin for good: no more sign-ins; their sessions end.
    Disable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Write every event, in commit order, as JSON lines to standard output.
    Export,
}

#[derive(Subcommand)]
pub enum PoliciesCommand {
    /// Make every subscription of its own follow a policy: one policy per distinct plan,
    /// under product PRODUCT (created if missing), by appending events. Without --apply it
    /// only says what it would do. Running it again adopts nothing twice.
    AdoptPlans {
        /// The product code the new policies belong to.
        #[arg(long, default_value = "default")]
        product: String,
        /// Do it (the default is a dry run).
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print the license-token public key (PEM) and its key id.
    Show,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Auditor,
}

impl RoleArg {
    fn name(self) -> &'static str {
        match self {
            RoleArg::Admin => "admin",
            RoleArg::Auditor => "auditor",
        }
    }
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

pub async fn run(cli: Cli, config: Config) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.listen_addr())
                .await
                .map_err(StartError::from)?;
            Ok(crate::serve(config, listener, shutdown_signal()).await?)
        }
        Command::Migrate => migrate(&config).await,
        Command::Replay => replay(&config).await,
        Command::Events {
            command: EventsCommand::Export,
        } => {
            let db = store::open_existing(config.store_url(), config.database_echo).await?;
            let exported = export_events(&db).await?;
            // Standard output holds the events.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("exported {exported} events");
            }
            Ok(())
        }
        Command::Admin { command } => run_admin_command(command, config).await,
        Command::Keys {
            command: KeysCommand::Show,
        } => {
            let keys = JwtKeys::load(
                &config.private_key_path,
                &config.public_key_path,
                config.is_production(),
                IfMissing::Refuse,
            )?;
            report(format_args!(
                "kid: {}\n{}",
                keys.kid,
                keys.public_pem.trim_end()
            ));
            Ok(())
        }
        Command::Policies {
            command: PoliciesCommand::AdoptPlans { product, apply },
        } => {
            let app = crate::App::start_for_maintenance(config).await?;
            let adopted = adopt_plans::adopt_plans(&app, &product, apply).await?;
            for line in &adopted.lines {
                report(line);
            }
            if apply {
                report(format_args!(
                    "adopted {} subscription(s); {} changed meanwhile and were left as they are (run it again)",
                    adopted.subscriptions - adopted.skipped,
                    adopted.skipped
                ));
            } else if adopted.subscriptions > 0 {
                report("dry run: nothing was written; run again with --apply to do it");
            }
            Ok(())
        }
        Command::Backup { file } => {
            let copied = backup::backup(config.store_url(), &file).await?;
            report(copied);
            Ok(())
        }
    }
}

/// A command's result, for the operator (not a log line).
fn report(line: impl std::fmt::Display) {
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
}

/// Which store a URL names, for the operator: never the URL itself (it may hold a password).
fn describe_store(url: &str) -> String {
    match store::sqlite_file(url) {
        Ok(Some(file)) => format!("the embedded store at {}", file.display()),
        Ok(None) if url.starts_with("sqlite:") => "an in-memory store".to_owned(),
        _ => "the PostgreSQL database".to_owned(),
    }
}

/// Creates (or migrates) the store and the keys: with `serve`, the only command that may,
/// so that `flowlytix migrate` followed by `flowlytix admin create` works on a new install.
async fn migrate(config: &Config) -> Result<(), CliError> {
    let url = config.store_url();
    store::open(url, config.database_echo, None).await?;
    let keys = JwtKeys::load_or_generate(
        &config.private_key_path,
        &config.public_key_path,
        config.is_production(),
    )?;
    crate::keys::server_secret(
        config.secret_key.as_ref(),
        &config.private_key_path,
        IfMissing::Generate,
    )?;
    report(format_args!(
        "migrated {}; license signing key {} at {}",
        describe_store(url),
        keys.kid,
        absolute(&config.private_key_path).display()
    ));
    Ok(())
}

async fn replay(config: &Config) -> Result<(), CliError> {
    let db = store::open_existing(config.store_url(), config.database_echo).await?;
    let display = ReplayDisplay::new();
    let started = std::time::Instant::now();
    let report_of = flowlytix_projections::replay::replay(&db, &|p| display.show(p))
        .await
        .map_err(CliError::Replay)?;
    display.finish();
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        events = report_of.events,
        caught_up = report_of.caught_up,
        parked = report_of.parked,
        seconds = format!("{seconds:.1}"),
        folding_seconds = format!("{:.2}", report_of.folding.as_secs_f64()),
        writing_seconds = format!("{:.2}", report_of.writing.as_secs_f64()),
        catching_up_seconds = format!("{:.2}", report_of.catching_up.as_secs_f64()),
        events_per_second = format!("{:.0}", report_of.events as f64 / seconds.max(1e-6)),
        "read models rebuilt from the event store"
    );
    report(format_args!(
        "rebuilt the read models from {} events in {seconds:.1} s ({} parked)",
        report_of.events + report_of.caught_up,
        report_of.parked
    ));
    Ok(())
}

async fn run_admin_command(command: AdminCommand, config: Config) -> Result<(), CliError> {
    let metadata = EventMetadata::system(Utc::now());
    let app = crate::App::start_for_maintenance(config).await?;
    let done = match command {
        AdminCommand::Create { email, role } => {
            let password = read_password(&email)?;
            accounts::create_admin(&app.admins, &email, &password, role.into(), metadata).await?;
            format!("created admin {email} ({})", role.name())
        }
        AdminCommand::SetRole { email, role } => {
            accounts::change_admin(
                &app.admins,
                app.admin_auth.sessions(),
                &email,
                AdminChange::Role(role.into()),
                metadata,
            )
            .await?;
            format!("admin {email} is now {}; their sessions ended", role.name())
        }
        AdminCommand::SetPassword { email } => {
            let password = read_password(&email)?;
            accounts::change_admin(
                &app.admins,
                app.admin_auth.sessions(),
                &email,
                AdminChange::Password(password),
                metadata,
            )
            .await?;
            format!("changed the password of admin {email}; their sessions ended")
        }
        AdminCommand::Disable { email } => {
            accounts::change_admin(
                &app.admins,
                app.admin_auth.sessions(),
                &email,
                AdminChange::Disable,
                metadata,
            )
            .await?;
            format!("disabled admin {email}; their sessions ended")
        }
    };
    report(done);
    Ok(())
}

/// A password: typed twice without echo on a terminal, else the first line of standard
/// input. Never an argument, which would show in the process list and shell history.
fn read_password(email: &str) -> Result<String, CliError> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password(format!("Password for {email}: "))?;
        if rpassword::prompt_password("Again: ")? != password {
            return Err(CliError::PasswordsDiffer);
        }
        return Ok(password);
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    Ok(input.lines().next().unwrap_or("").to_owned())
}

/// Writes every event as a JSON line; returns how many.
async fn export_events(db: &store::Db) -> Result<u64, CliError> {
    use flowlytix_eventstore::log::{events_after, LogCursor};
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut cursor = LogCursor::default();
    let mut connection = db.acquire().await?;
    let mut exported = 0;
    loop {
        let batch = events_after(connection.conn(), cursor, 1000).await?;
        let Some((last, _)) = batch.last() else { break };
        cursor = *last;
        for (_, event) in &batch {
            serde_json::to_writer(&mut out, event).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            exported += 1;
        }
    }
    out.flush()?;
    Ok(exported)
}

/// A replay's progress: a bar with events/s and an ETA on a terminal, log lines otherwise.
struct ReplayDisplay {
    bar: Option<indicatif::ProgressBar>,
    last_log: std::sync::Mutex<std::time::Instant>,
}

impl ReplayDisplay {
    fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {human_pos}/{human_len} events, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("folding the log");
            bar
        });
        Self {
            bar,
            last_log: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn show(&self, progress: ReplayProgress) {
        match (progress, &self.bar) {
            (ReplayProgress::Folding { done, total }, Some(bar)) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            (ReplayProgress::Folding { done, total }, None) => {
                let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= std::time::Duration::from_secs(2) || done == total {
                    *last = std::time::Instant::now();
                    tracing::info!(done, total, "replay: folding the event log");
                }
            }
            (
                ReplayProgress::Writing {
                    subscriptions,
                    devices,
                },
                Some(bar),
            ) => {
                bar.set_message(format!(
                    "writing {subscriptions} subscriptions, {devices} devices"
                ));
            }
            (
                ReplayProgress::Writing {
                    subscriptions,
                    devices,
                },
                None,
            ) => {
                tracing::info!(
                    subscriptions,
                    devices,
                    "replay: swapping the rebuilt read models in"
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
