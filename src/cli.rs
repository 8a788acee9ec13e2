//! The `flowlytix` command line.

use std::io::Read;

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use flowlytix_aggregates::Role;
use secrecy::ExposeSecret;

use crate::app::StartError;
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
            let url = config.database_url.as_ref().ok_or(StartError::NoDatabase)?;
            let pool = store::connect(url.expose_secret(), config.database_echo).await?;
            store::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Create { email, role },
        } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.lines().next().unwrap_or("").to_owned();
            let app = crate::App::start(config).await?;
            let id = app
                .create_admin(
                    &email,
                    &password,
                    role.into(),
                    EventMetadata::system(Utc::now()),
                )
                .await
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
            tracing::info!(admin_id = %id, %email, "admin created");
            Ok(())
        }
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
    tracing::info!("shutting down");
}
