//! The tasks an instance runs beside its HTTP server, and their one shutdown signal. Some are
//! joined at shutdown (the publisher and the projectors finish the batch they hold, the webhook
//! dispatcher the attempts it has in flight); the others only stop when told.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Default)]
pub struct BackgroundTasks {
    shutdown: watch::Sender<bool>,
    joined: Mutex<Vec<JoinHandle<()>>>,
}

impl BackgroundTasks {
    /// What a task watches to know when to stop.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Runs `task` until it stops by itself or at the signal; shutdown does not wait for it.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        tokio::spawn(task);
    }

    /// Runs `task`; shutdown waits for it to finish.
    pub fn spawn_joined<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        let handle = tokio::spawn(task);
        self.joined
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Tells every task to stop.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Tells every task to stop and waits up to `within` for the joined ones; `false` if
    /// some did not finish in time.
    pub async fn stop_and_join(&self, within: Duration) -> bool {
        self.stop();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.joined.lock().unwrap_or_else(|e| e.into_inner()));
        tokio::time::timeout(within, futures::future::join_all(tasks))
            .await
            .is_ok()
    }
}
