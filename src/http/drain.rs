//! Draining at shutdown. The listening socket closes the moment shutdown begins (new
//! connections are refused, not reset), but connections already accepted keep being
//! served for a short linger, each answer with `Connection: close`: a client that had just
//! connected, or that reuses a kept-alive connection, gets its answer rather than a
//! connection closed under its request. After the linger, connections that are idle close
//! and requests in flight finish (bounded by `SHUTDOWN_TIMEOUT_SECS`).

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long accepted connections are still served once shutdown begins.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(1000);

/// A listener that closes its socket when `closing` turns true, after taking the
/// connections the kernel had already completed (closing the socket would reset them).
pub struct ClosingListener {
    inner: Option<TcpListener>,
    address: SocketAddr,
    closing: watch::Receiver<bool>,
    /// Taken from the socket's queue as it closed; handed out before anything else.
    queued: std::collections::VecDeque<(TcpStream, SocketAddr)>,
}

impl ClosingListener {
    pub fn new(listener: TcpListener, closing: watch::Receiver<bool>) -> std::io::Result<Self> {
        Ok(Self {
            address: listener.local_addr()?,
            inner: Some(listener),
            closing,
            queued: std::collections::VecDeque::new(),
        })
    }
}

impl axum::serve::Listener for ClosingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            if let Some(connection) = self.queued.pop_front() {
                return connection;
            }
            let Some(listener) = self.inner.as_ref() else {
                // Closed: axum stops asking once its own shutdown begins.
                return std::future::pending().await;
            };
            let closing = &mut self.closing;
            let accepted = tokio::select! {
                biased;
                _ = closing.wait_for(|closing| *closing) => None,
                accepted = listener.accept() => Some(accepted),
            };
            match accepted {
                None => {
                    // Every connection already in the queue is taken (accepting is
                    // cancel-safe, and one not ready yet is no connection yet); then
                    // dropping the socket refuses every connection from now on.
                    while let Some(Ok(connection)) = listener.accept().now_or_never() {
                        self.queued.push_back(connection);
                    }
                    self.inner = None;
                    tracing::info!("listener closed: new connections are refused");
                }
                Some(Ok(connection)) => return connection,
                Some(Err(error)) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.address)
    }
}

/// Middleware: once shutdown has begun, every answer closes its connection.
pub async fn close_connections_when_draining(
    State(closing): State<watch::Receiver<bool>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if *closing.borrow() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
