//! The Flowlytix Subscription Server: subscriptions, license keys, device activations and
//! Ed25519-signed license tokens, event-sourced on PostgreSQL.

pub mod app;
pub mod auth;
pub mod background;
pub mod bus;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod http;
pub mod idempotency;
pub mod keys;
pub mod leader;
pub mod leases;
pub mod licensing;
pub mod monitoring;
pub mod panel;
pub mod read;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod webhooks;

use std::future::Future;

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

/// Serves `app` until `shutdown` completes, then stops gracefully (see `http::drain`): the
/// listener closes at once, connections already accepted are served for a moment longer
/// with `Connection: close`, requests in flight finish (for at most
/// `SHUTDOWN_TIMEOUT_SECS`), the publisher and projectors finish their batches, and the
/// database connections close.
pub async fn serve_app(
    app: SharedApp,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let address = listener.local_addr()?;
    let metrics_server = http::metrics::serve_own_listener(&app).await?;
    tracing::info!(%address, docs = %format!("http://{address}/docs"), "serving");
    let (closing, closing_seen) = tokio::sync::watch::channel(false);
    let router = http::router(app.clone()).layer(axum::middleware::from_fn_with_state(
        closing_seen.clone(),
        http::drain::close_connections_when_draining,
    ));
    let listener = http::drain::ClosingListener::new(listener, closing_seen.clone())?;
    let grace = app.config.shutdown_timeout;
    let mut draining = closing_seen;
    let limits = http::connections::ConnectionLimits::from_config(&app.config);
    let server = http::connections::serve(listener, router, limits, async move {
        shutdown.await;
        tracing::info!("shutting down: refusing new connections, finishing the requests in flight");
        let _ = closing.send(true);
        tokio::time::sleep(http::drain::LINGER.min(grace)).await;
    });
    let deadline = async move {
        let _ = draining.wait_for(|closing| *closing).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {}
        () = deadline => tracing::warn!(
            seconds = grace.as_secs(),
            "requests still in flight after SHUTDOWN_TIMEOUT_SECS; closing their connections"
        ),
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    app.shut_down(grace).await;
    Ok(())
}
