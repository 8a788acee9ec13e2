//! The `flowlytix` command line.

use std::io::Read;

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use flowlytix_aggregates::Role;
use secrecy::ExposeSecret;

use flowlytix_projections::replay::ReplayProgress;

use crate::app::StartError;
use crate::auth::accounts::{self, AdminChange};
use crate::config::Config;
use crate::store::{self, EventMetadata};

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
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an admin user. The password is read from standard input (one line), so it
    /// never appears in the process list or shell history.
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
    /// Set a new password, read from standard input (one line). Their sessions end.
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
pub enum KeysCommand {
    /// Print the license-token public key (PEM) and its key id.
    Show,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Auditor,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

pub async fn run(cli: Cli, config: Config) -> Result<(), StartError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.listen_addr()).await?;
            crate::serve(config, listener, shutdown_signal()).await
        }
        Command::Migrate => {
            connect(&config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Replay => {
            let db = connect(&config).await?;
            let display = ReplayDisplay::new();
            let started = std::time::Instant::now();
            let report = flowlytix_projections::replay::replay(&db, &|p| display.show(p))
                .await
                .map_err(StartError::Replay)?;
            display.finish();
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                events = report.events,
                caught_up = report.caught_up,
                parked = report.parked,
                seconds = format!("{seconds:.1}"),
                folding_seconds = format!("{:.2}", report.folding.as_secs_f64()),
                writing_seconds = format!("{:.2}", report.writing.as_secs_f64()),
                catching_up_seconds = format!("{:.2}", report.catching_up.as_secs_f64()),
                events_per_second = format!("{:.0}", report.events as f64 / seconds.max(1e-6)),
                "read models rebuilt from the event store"
            );
            Ok(())
        }
        Command::Events {
            command: EventsCommand::Export,
        } => {
            let pool = connect(&config).await?;
            export_events(&pool).await
        }
        Command::Admin { command } => run_admin_command(command, config).await,
        Command::Keys {
            command: KeysCommand::Show,
        } => {
            let keys = crate::keys::JwtKeys::load_or_generate(
                &config.private_key_path,
                &config.public_key_path,
                config.is_production(),
            )?;
            // Output for the operator, not a log line.
            #[allow(clippy::print_stdout)]
            {
                println!("kid: {}", keys.kid);
                print!("{}", keys.public_pem);
            }
            Ok(())
        }
    }
}

async fn run_admin_command(command: AdminCommand, config: Config) -> Result<(), StartError> {
    let metadata = EventMetadata::system(Utc::now());
    let app = crate::App::start_for_maintenance(config).await?;
    let (id, email) = match command {
        AdminCommand::Create { email, role } => {
            let password = read_password_line()?;
            (
                accounts::create_admin(&app.admins, &email, &password, role.into(), metadata)
                    .await?,
                email,
            )
        }
        AdminCommand::SetRole { email, role } => (
            accounts::change_admin(
                &app.admins,
                app.admin_auth.sessions(),
                &email,
                AdminChange::Role(role.into()),
                metadata,
            )
            .await?,
            email,
        ),
        AdminCommand::SetPassword { email } => {
            let password = read_password_line()?;
            (
                accounts::change_admin(
                    &app.admins,
                    app.admin_auth.sessions(),
                    &email,
                    AdminChange::Password(password),
                    metadata,
                )
                .await?,
                email,
            )
        }
        AdminCommand::Disable { email } => (
            accounts::change_admin(
                &app.admins,
                app.admin_auth.sessions(),
                &email,
                AdminChange::Disable,
                metadata,
            )
            .await?,
            email,
        ),
    };
    tracing::info!(admin_id = %id, %email, "admin account updated");
    Ok(())
}

/// The first line of standard input: passwords never go on the command line.
fn read_password_line() -> Result<String, StartError> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    Ok(input.lines().next().unwrap_or("").to_owned())
}

/// A migrated pool, for the commands that work on the database without serving.
async fn connect(config: &Config) -> Result<store::Db, StartError> {
    let url = config
        .database_url
        .as_ref()
        .map_or(store::DEFAULT_SQLITE_URL, |u| u.expose_secret());
    Ok(store::open(url, config.database_echo, None).await?)
}

async fn export_events(db: &store::Db) -> Result<(), StartError> {
    use flowlytix_eventstore::log::{events_after, LogCursor};
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut cursor = LogCursor::default();
    let mut connection = db.acquire().await?;
    loop {
        let batch = events_after(connection.conn(), cursor, 1000).await?;
        let Some((last, _)) = batch.last() else { break };
        cursor = *last;
        for (_, event) in &batch {
            serde_json::to_writer(&mut out, event).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
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
