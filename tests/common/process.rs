//! The service as its own process (the built binary), as an operator runs it: for what only a
//! process can show (signals, several replicas on one database, what it prints).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_amp-orchestrator");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `amp-orchestrator serve`, its output in a file (read with [`ServiceProcess::output`]).
pub struct ServiceProcess {
    pub child: Child,
    pub port: u16,
    pub base: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// Start the binary with exactly `env` (plus `PATH`, `HOST` and `PORT`) and wait until it
    /// answers `/healthz`.
    pub async fn start(env: &[(String, String)]) -> ServiceProcess {
        // A free port can be taken by someone else before the child binds it: try another.
        for _ in 0..3 {
            if let Some(process) = Self::try_start_on(free_port(), env).await {
                return process;
            }
        }
        panic!("no free port could be bound in three tries");
    }

    pub async fn start_on(port: u16, env: &[(String, String)]) -> ServiceProcess {
        Self::try_start_on(port, env)
            .await
            .unwrap_or_else(|| panic!("port {port} is taken"))
    }

    /// `None` when the port was taken.
    async fn try_start_on(port: u16, env: &[(String, String)]) -> Option<ServiceProcess> {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("service.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(BIN);
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let mut process = ServiceProcess {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        process.wait_healthy().await.then_some(process)
    }

    /// `false` when the process exited because its port was taken.
    async fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if self.output().contains("Address already in use") {
                    return false;
                }
                panic!("the service exited ({status}):\n{}", self.output());
            }
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status() == 200
            {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become healthy:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).unwrap();
    }

    /// Wait for the process to exit; its exit code (`None`: killed by a signal).
    pub async fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {secs}s:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
