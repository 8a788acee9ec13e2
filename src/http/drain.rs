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
                    // Every connection already in the queue is taken; then dropping the
                    // socket refuses every connection from now on.
                    if let Some(listener) = self.inner.take() {
                        self.queued.extend(take_completed_connections(listener));
                    }
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

/// Takes every connection in the socket's queue, with a real `accept(2)` each time through
/// the std socket. Tokio's own `accept` answers from the readiness its reactor last saw, so
/// a connection that arrived since the reactor last ran looks like none, and closing the
/// socket would reset it (seen in CI: a client under load got "connection reset").
fn take_completed_connections(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let listener = match listener.into_std() {
        Ok(listener) => listener, // still non-blocking: an empty queue is `WouldBlock`
        Err(error) => {
            tracing::warn!(%error, "could not take the queued connections");
            return Vec::new();
        }
    };
    let mut taken = Vec::new();
    loop {
        match listener.accept() {
            Ok((connection, peer)) => {
                let connection = connection
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(connection));
                match connection {
                    Ok(connection) => taken.push((connection, peer)),
                    Err(error) => tracing::warn!(%error, "a queued connection was lost"),
                }
            }
            // A client that gave up while queued; the next one may still be there.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted
                ) => {}
            Err(error) => {
                if error.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::warn!(%error, "accept failed while closing");
                }
                return taken;
            }
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Read;
    use std::time::Duration;

    use axum::serve::Listener;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Connections that the kernel completed just before shutdown, and that tokio's reactor
    /// has not yet seen, are taken and served; only connections after the close are refused.
    /// The runtime is single-threaded and nothing here waits before the close, so the reactor
    /// never runs in between: tokio's own readiness still says there is nothing to accept.
    #[tokio::test(flavor = "current_thread")]
    async fn connections_completed_before_the_close_are_served_not_reset() {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let (closing, closing_seen) = watch::channel(false);
        let mut listener = ClosingListener::new(socket, closing_seen).unwrap();
        let clients: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();

        closing.send(true).unwrap();
        for _ in &clients {
            let (mut served, _) = tokio::time::timeout(Duration::from_secs(2), listener.accept())
                .await
                .expect("a connection the kernel had completed was dropped at the close");
            served.write_all(b"answer").await.unwrap();
        }
        for mut client in clients {
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut answer = [0; 6];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"answer");
        }
        let refused = std::net::TcpStream::connect(address).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
