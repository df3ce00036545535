//! The real `stsbridge` binary, started on 127.0.0.1 and a port from the OS, with its stdout (audit
//! events) and stderr (logs) captured in full for assertions and the leak check.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `stsbridge serve`.
pub struct BridgeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` (or `https://` when it serves TLS).
    pub base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr; they end when the process has closed both.
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The working directory (config, mappings, keys).
    pub dir: PathBuf,
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn capture(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
    listening: Option<mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let (Some(tx), Some(at)) = (&listening, line.find("listening on ")) {
                // "listening on 127.0.0.1:PORT (https)": the agent and dev mode say no scheme.
                let rest = &line[at + "listening on ".len()..];
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let scheme = if rest.contains("(https)") {
                    "https"
                } else {
                    "http"
                };
                let _ = tx.send(format!("{scheme}://{addr}"));
            }
            let mut all = into.lock().expect("lock");
            all.push_str(&line);
            all.push('\n');
        }
    })
}

impl BridgeProcess {
    /// Runs `binary` with `args` in `dir` and waits until it listens and is ready. The caller
    /// passes `--listen 127.0.0.1:0` or a config with that address.
    pub async fn spawn(
        binary: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> BridgeProcess {
        let process = Self::spawn_listening(binary, dir, args, env).await;
        process.wait_ready().await;
        process
    }

    /// As [`BridgeProcess::spawn`], waiting only until it listens (for a process that is not
    /// meant to become ready).
    pub async fn spawn_listening(
        binary: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> BridgeProcess {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            capture(
                child.stdout.take().expect("stdout"),
                Arc::clone(&stdout),
                Some(tx.clone()),
            ),
            capture(
                child.stderr.take().expect("stderr"),
                Arc::clone(&stderr),
                Some(tx),
            ),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(addr) = rx.try_recv() {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "stsbridge exited with {status} before listening:\n{}",
                    stderr.lock().expect("lock")
                );
            }
            assert!(
                Instant::now() < deadline,
                "stsbridge did not listen within 30 s:\n{}",
                stderr.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        BridgeProcess {
            child,
            base: addr,
            stdout,
            stderr,
            readers,
            dir: dir.to_path_buf(),
        }
    }

    async fn wait_ready(&self) {
        // Readiness only: the tests check the certificate themselves.
        let client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let last = match client.get(self.url("/readyz")).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                // A listener that requires client certificates refuses this anonymous probe in
                // the TLS handshake: it is up. (Its first exchange fetches any JWKS not yet there.)
                Err(_)
                    if self.base.starts_with("https://")
                        && self.stderr().contains("stsbridge started") =>
                {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return;
                }
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "{} did not become ready ({last}):\n{}",
                self.base,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `HUP`...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit status, or `None` if it still runs
    /// (with a zero `timeout`: whether it has exited now).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process as an operator would (SIGTERM), waits for it to exit 0 and for the last
    /// of its stdout and stderr to be read: afterwards [`Self::stdout`] and [`Self::stderr`] hold
    /// everything it wrote, including what it flushed at shutdown.
    pub async fn stop(&mut self) {
        self.signal("TERM");
        let status = self
            .wait_exit(Duration::from_secs(30))
            .await
            .expect("the process exits within 30 s of SIGTERM");
        assert!(status.success(), "{status}:\n{}", self.stderr());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .readers
            .iter()
            .all(std::thread::JoinHandle::is_finished)
        {
            assert!(
                Instant::now() < deadline,
                "the output pipes are still open 10 s after exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A URL on the bridge.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Everything written to stderr, once a line satisfies `wanted` (the capture runs on its own
    /// thread, so a line logged before a response may land a moment after it); the whole log as
    /// it is after about two seconds otherwise, for the caller's assertion to show.
    pub async fn stderr_once(&self, wanted: impl Fn(&str) -> bool) -> String {
        for _ in 0..100 {
            let log = self.stderr();
            if log.lines().any(&wanted) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stderr()
    }

    /// The audit events written so far (JSON lines on stdout).
    pub fn audit_events(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("decision_id").is_some())
            .collect()
    }

    /// The audit events, once at least `n` have been written (the capture of stdout runs on its own
    /// thread, so the last line may land a moment after the response).
    pub async fn audit_events_at_least(&self, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            let events = self.audit_events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {n} audit events:\n{}", self.stdout());
    }

    /// The audit event with this decision id, waiting briefly for it to be flushed.
    pub async fn audit_event(&self, decision_id: &str) -> Value {
        for _ in 0..100 {
            if let Some(e) = self
                .audit_events()
                .into_iter()
                .find(|e| e["decision_id"] == decision_id)
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no audit event with decision id {decision_id}:\n{}",
            self.stdout()
        );
    }
}
