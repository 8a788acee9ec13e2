//! Child processes a test may stop, kill or restart: a nats-server of the test's own and
//! the real server binary. Each is killed when dropped, also when the test panics.

use std::path::PathBuf;

use reqwest::Client;
use uuid::Uuid;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a random port")
        .local_addr()
        .expect("local address")
        .port()
}

/// A nats-server of the test's own (JetStream on, its own storage directory), which the
/// test may stop and start again on the same port and directory. Never the shared one.
pub struct NatsServer {
    child: Option<tokio::process::Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl NatsServer {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("flowlytix-test-nats-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the NATS storage directory");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
        };
        server.run().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and storage directory; returns once it accepts
    /// connections.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "the NATS server is already running");
        let binary =
            std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let log = std::fs::File::create(
            self.dir
                .join(format!("nats-{}.log", Uuid::new_v4().simple())),
        )
        .expect("create the NATS log");
        let child = tokio::process::Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Stops it the way an operator does (SIGTERM: JetStream flushes its storage), falling
    /// back to SIGKILL; returns once the process is gone.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The real `flowlytix` binary serving on a port of its own, killed when dropped (also when
/// the test panics).
pub struct ServerProcess {
    child: tokio::process::Child,
    pub address: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `flowlytix serve` with exactly `env` (plus HOST and PORT) and waits until it
    /// answers `/livez`.
    pub async fn start(env: &[(String, String)]) -> Self {
        let port = free_port();
        let work_dir =
            std::env::temp_dir().join(format!("flowlytix-test-server-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&work_dir).expect("create the server's working directory");
        let log = work_dir.join("server.log");
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowlytix"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            // No `.env` of the workspace: the environment above is the whole configuration.
            .current_dir(&work_dir)
            .stdout(log_file.try_clone().expect("clone the log handle"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the flowlytix binary");
        let mut server = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_until_live().await;
        server
    }

    async fn wait_until_live(&mut self) {
        let client = Client::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the server exited at start-up ({status}); its log:\n{}",
                    self.log_text()
                );
            }
            let live = client.get(format!("{}/livez", self.address)).send().await;
            if live.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "the server did not come up within 30 s; its log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown code runs. Returns once the process is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, as an orchestrator stops a server; waits (at most `within`) for it to exit
    /// and returns how it exited.
    pub async fn terminate(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        self.signal("TERM", within).await
    }

    /// Sends `signal` (`TERM`, `INT`, …); waits (at most `within`) for the server to exit
    /// and returns how it exited.
    pub async fn signal(
        &mut self,
        signal: &str,
        within: std::time::Duration,
    ) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the server is running");
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid}");
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => panic!(
                "the server did not exit within {within:?} of SIG{signal}; its log:\n{}",
                self.log_text()
            ),
        }
    }

    /// The server's working directory (relative paths such as `LOG_FILE` start there).
    pub fn work_dir(&self) -> &std::path::Path {
        self.log
            .parent()
            .expect("the log is in the working directory")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
