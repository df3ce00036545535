//! A real Redis server for the shared-state tests: Debian's `redis-server` (which `tests/run.sh`
//! installs when it is missing), started on 127.0.0.1 and a free port with no persistence, able
//! to stop and start again on the same port (an outage and a recovery), killed on drop. Also a
//! "Redis" that accepts connections and never answers, or answers garbage.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `redis-server` program: `STSBRIDGE_TEST_REDIS_SERVER`, or the one on `PATH`. Without it
/// the test fails with instructions rather than skips.
fn redis_server() -> PathBuf {
    if let Ok(p) = std::env::var("STSBRIDGE_TEST_REDIS_SERVER") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.expect(
        "redis-server is not installed: run `bash tests/run.sh`, which installs Debian's \
         redis-server (or set STSBRIDGE_TEST_REDIS_SERVER to one)",
    )
}

/// A running `redis-server` of one test.
pub struct Redis {
    /// Its port on 127.0.0.1 (kept across [`Redis::stop`] and [`Redis::start_again`]).
    pub port: u16,
    password: Option<String>,
    /// Serves TLS only (`rediss://`), with this certificate and key (PEM files in `dir`).
    tls: bool,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Redis {
    /// Starts a server without a password.
    pub fn start() -> Redis {
        Self::start_with(None)
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Redis {
        Self::start_with(Some(password.to_owned()))
    }

    /// Starts a server that speaks TLS only, with `cert_pem` and `key_pem` (clients need no
    /// certificate).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Redis {
        Self::start_tls_with(cert_pem, key_pem, None)
    }

    /// As [`Redis::start_tls`], requiring `password` when given.
    pub fn start_tls_with(cert_pem: &str, key_pem: &str, password: Option<&str>) -> Redis {
        let dir = tempfile::tempdir().expect("a directory for redis");
        std::fs::write(dir.path().join("cert.pem"), cert_pem).expect("write the certificate");
        std::fs::write(dir.path().join("key.pem"), key_pem).expect("write the key");
        let mut redis = Redis {
            port: crate::free_port(),
            password: password.map(str::to_owned),
            tls: true,
            child: None,
            dir,
        };
        redis.start_again();
        redis
    }

    fn start_with(password: Option<String>) -> Redis {
        let mut redis = Redis {
            port: crate::free_port(),
            password,
            tls: false,
            child: None,
            dir: tempfile::tempdir().expect("a directory for redis"),
        };
        redis.start_again();
        redis
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port (after [`Redis::stop`]), empty: no persistence,
    /// as after a failover to a replica that had not caught up. Waits until it answers `PING`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let port = self.port.to_string();
        let (plain, tls) = if self.tls {
            ("0", port.as_str())
        } else {
            (port.as_str(), "0")
        };
        let mut args = vec![
            "--port",
            plain,
            "--tls-port",
            tls,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ];
        if let Some(password) = &self.password {
            args.extend(["--requirepass", password]);
        }
        if self.tls {
            args.extend([
                "--tls-cert-file",
                "cert.pem",
                "--tls-key-file",
                "key.pem",
                "--tls-auth-clients",
                "no",
            ]);
        }
        let child = Command::new(redis_server())
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited with {status} (port {port} taken?)");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (an outage) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server answers `PING` with `PONG` (a TLS server: whether it accepts
    /// connections).
    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if let Some(password) = &self.password {
            let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
            if stream.write_all(auth.as_bytes()).is_err() {
                return false;
            }
        }
        if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if self.password.is_some() && reader.read_line(&mut line).is_err() {
            return false;
        }
        line.clear();
        reader.read_line(&mut line).is_ok() && line == "+PONG\r\n"
    }

    /// Runs `redis-cli ARGS` against the server and returns its output (for looking at the keys
    /// stsbridge wrote).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(redis_server().with_file_name("redis-cli"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        let out = cmd.args(args).output().expect("cannot run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A "Redis" that is not one: it accepts connections and either never answers (a server that
/// hangs) or answers every read with the same bytes (garbage). Counts the connections it
/// accepted. Stops accepting on drop.
pub struct FakeRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl FakeRedis {
    /// A server that reads what it is sent and never writes.
    pub fn silent() -> FakeRedis {
        Self::start(None)
    }

    /// A server that answers whatever it reads with `reply` (like `:1\r\n`: well-formed RESP,
    /// but never what was asked).
    pub fn answering(reply: &'static [u8]) -> FakeRedis {
        Self::start(Some(reply))
    }

    fn start(reply: Option<&'static [u8]>) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stopped, counted) = (Arc::clone(&stop), Arc::clone(&accepted));
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        match reply {
                            // Kept open, never written to.
                            None => held.push(stream),
                            Some(reply) => {
                                std::thread::spawn(move || answer(stream, reply));
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeRedis {
            port,
            stop,
            accepted,
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Answers every read on `stream` with `reply` until the peer closes it.
fn answer(mut stream: TcpStream, reply: &[u8]) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
        if n == 0 || stream.write_all(reply).is_err() {
            return;
        }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
