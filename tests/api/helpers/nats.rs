//! The read side on a real NATS JetStream: apps with a stream of their own on the shared
//! NATS, and another instance on the same database and stream.

use std::path::Path;

use uuid::Uuid;

use super::{fresh_database, start_app, TestApp};

/// The NATS every test shares (`TEST_NATS_URL`, default `nats://127.0.0.1:4222`).
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A NATS URL with a stream name and subject prefix of its own, so that tests sharing one
/// NATS never see each other's events.
#[derive(Clone, Debug)]
pub struct NatsNames {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

impl NatsNames {
    /// Names of a stream of its own. The first call of a run first removes the streams that
    /// earlier runs left on the shared NATS, so that this removal never hits a stream a test
    /// of this run has started to use (a server child process creates its stream itself).
    pub async fn unique(url: &str) -> Self {
        remove_streams_of_earlier_runs().await;
        let id = Uuid::new_v4().simple().to_string();
        Self {
            url: url.to_owned(),
            stream: format!("FLOWLYTIX_TEST_{id}"),
            subject_prefix: format!("flowlytix-test.{id}"),
        }
    }

    /// NATS_URL, NATS_STREAM and NATS_SUBJECT_PREFIX.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NATS_URL".into(), self.url.clone()),
            ("NATS_STREAM".into(), self.stream.clone()),
            ("NATS_SUBJECT_PREFIX".into(), self.subject_prefix.clone()),
        ]
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.url.as_str())
            .await
            .expect("connect to NATS");
        async_nats::jetstream::new(client)
    }

    /// The stream's state (messages, last sequence).
    pub async fn stream_state(&self) -> async_nats::jetstream::stream::State {
        let mut stream = self
            .jetstream()
            .await
            .get_stream(&self.stream)
            .await
            .expect("the test stream exists");
        stream.info().await.expect("stream info").state.clone()
    }

    /// Best effort: removes the stream once a test is done with it.
    pub async fn delete_stream(&self) {
        if let Ok(Ok(client)) = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            async_nats::connect(self.url.as_str()),
        )
        .await
        {
            let _ = async_nats::jetstream::new(client)
                .delete_stream(&self.stream)
                .await;
        }
    }
}

/// Test streams are left on the shared NATS when a run ends; the next run removes them
/// (once, before it names its first stream: see `NatsNames::unique`).
async fn remove_streams_of_earlier_runs() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let Ok(Ok(client)) = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            async_nats::connect(nats_url().as_str()),
        )
        .await
        else {
            return;
        };
        let jetstream = async_nats::jetstream::new(client);
        let names: Vec<String> = {
            use futures::TryStreamExt;
            jetstream
                .stream_names()
                .try_collect()
                .await
                .unwrap_or_default()
        };
        for name in names
            .into_iter()
            .filter(|n| n.starts_with("FLOWLYTIX_TEST_"))
        {
            let _ = jetstream.delete_stream(&name).await;
        }
    })
    .await;
}

/// An app on NATS JetStream (its own stream), and the names of that stream.
pub struct NatsTestApp {
    pub app: TestApp,
    pub nats: NatsNames,
}

impl std::ops::Deref for NatsTestApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl NatsTestApp {
    /// Stops this app's publisher and projectors and deletes its stream.
    pub async fn teardown(&self) {
        self.app.server.stop_background_tasks();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.nats.delete_stream().await;
    }
}

/// Like `spawn_app`, with the read side on the shared NATS (`TEST_NATS_URL`).
pub async fn spawn_app_on_nats() -> NatsTestApp {
    spawn_app_on_nats_at(&nats_url()).await
}

/// Like `spawn_app`, with the read side on the NATS at `url` and a stream of its own.
pub async fn spawn_app_on_nats_at(url: &str) -> NatsTestApp {
    let nats = NatsNames::unique(url).await;
    let database_url = fresh_database().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let app = start_app(&database_url, &key_dir, Some(nats.clone()), &[]).await;
    NatsTestApp { app, nats }
}

/// Another in-process instance on an existing database, key directory and NATS stream,
/// signed in as the bootstrap admin.
pub async fn spawn_nats_instance(database_url: &str, key_dir: &Path, nats: &NatsNames) -> TestApp {
    start_app(database_url, key_dir, Some(nats.clone()), &[]).await
}
