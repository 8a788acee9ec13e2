//! Serving connections with hyper directly rather than through `axum::serve`, for two limits
//! it cannot set. `axum::serve` gives hyper no timer, so no header-read timeout applies: a
//! client that sent half a request head held its connection (a task and a descriptor) for
//! ever. And it accepts every connection the kernel hands it. Here a connection must send
//! a whole request head within `HEADER_READ_TIMEOUT`, and at most `MAX_CONNECTIONS` are
//! served at once (the rest wait in the kernel's accept queue).
//!
//! Shutdown is `axum::serve`'s: when `shutdown` completes the accept loop stops, each
//! connection finishes the request it is serving and closes (an idle one at once), and
//! `serve` returns once the last one has. (`drain` closes the socket and lingers before
//! that.)

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `HEADER_READ_TIMEOUT`: also how long a kept-alive connection may sit idle, since
    /// hyper starts the clock whenever it waits for a request head.
    pub header_read_timeout: Duration,
    /// `MAX_CONNECTIONS`.
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            max_connections: config.max_connections,
        }
    }
}

/// Serves `router` on every connection `listener` accepts until `shutdown` completes, then
/// until every connection has closed.
pub async fn serve(
    mut listener: impl Listener<Io = TcpStream, Addr = SocketAddr>,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let (stop, stopping) = watch::channel(false);
    // Each connection holds a clone of `open`; `all_closed.closed()` waits for the last.
    let (all_closed, open) = watch::channel(());
    let mut cap_reached = CapReached {
        cap: limits.max_connections,
        last_warning: None,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (slot, io, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept_within_cap(&mut listener, &slots, &mut cap_reached) => accepted,
        };
        tracing::trace!(%peer, "connection accepted");
        // Each request carries the peer's address, as axum's
        // `into_make_service_with_connect_info` gives it.
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            tower::Service::call(&mut router.clone(), request)
        });
        let connection = http.serve_connection(TokioIo::new(io), service);
        let (mut stopping, open) = (stopping.clone(), open.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                // A client that hung up, a header-read timeout, a malformed request: the
                // connection's business, not the server's.
                tracing::debug!(%error, timeout = error.is_timeout(), %peer, "connection ended");
            }
        });
    }
    let _ = stop.send(true);
    drop((listener, open));
    all_closed.closed().await;
}

/// Says that `MAX_CONNECTIONS` was reached, once a minute at most: under a flood it is
/// reached again each time a connection closes.
struct CapReached {
    cap: usize,
    last_warning: Option<Instant>,
}

impl CapReached {
    fn warn(&mut self) {
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                max_connections = self.cap,
                "MAX_CONNECTIONS reached: new connections wait until one closes"
            );
        }
    }
}

/// A free slot, then a connection to fill it: at the cap, connections wait in the kernel's
/// queue rather than here.
async fn accept_within_cap(
    listener: &mut impl Listener<Io = TcpStream, Addr = SocketAddr>,
    slots: &Arc<Semaphore>,
    cap_reached: &mut CapReached,
) -> (OwnedSemaphorePermit, TcpStream, SocketAddr) {
    let slot = match slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => {
            cap_reached.warn();
            slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed")
        }
    };
    let (io, peer) = listener.accept().await;
    (slot, io, peer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::http::drain::ClosingListener;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    /// At the cap a further connection is not refused: it waits, unserved, until a
    /// connection closes, and is then answered.
    #[tokio::test]
    async fn past_max_connections_a_connection_waits_for_a_free_slot() {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let (_closing, closing_seen) = watch::channel(false);
        let listener = ClosingListener::new(socket, closing_seen).unwrap();
        let router = Router::new().route("/", get(|| async { "served" }));
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1,
        };
        tokio::spawn(serve(listener, router, limits, std::future::pending()));

        // The one slot: a connection that has sent nothing yet.
        let mut first = TcpStream::connect(address).await.unwrap();
        let mut second = TcpStream::connect(address).await.unwrap();
        second.write_all(REQUEST).await.unwrap();
        let mut answer = [0u8; 1];
        let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut answer));
        assert!(
            waited.await.is_err(),
            "a connection past MAX_CONNECTIONS was served"
        );

        // The first one is served and closes: the second gets the slot and its answer.
        first.write_all(REQUEST).await.unwrap();
        let mut text = String::new();
        first.read_to_string(&mut text).await.unwrap();
        assert!(text.ends_with("served"), "{text}");
        let mut text = String::new();
        second.read_to_string(&mut text).await.unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("served"),
            "{text}"
        );
    }
}
