//! The Flowlytix Subscription Server: subscriptions, license keys, device activations and
//! Ed25519-signed license tokens, event-sourced on PostgreSQL.

pub mod app;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod http;
pub mod keys;
pub mod licensing;
pub mod read;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use app::{App, SharedApp, StartError};
pub use config::Config;

/// Starts the application and serves it on `listener` until `shutdown` completes. Tests
/// bind port 0 and pass the listener in.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = App::start(config).await?;
    serve_app(app, listener, shutdown).await
}

pub async fn serve_app(
    app: SharedApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let address = listener.local_addr()?;
    tracing::info!(%address, docs = %format!("http://{address}/docs"), "serving");
    let router = http::router(app);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
