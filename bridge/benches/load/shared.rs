//! The shared-state runs: the cached path with `shared_state` on a real Redis against the same
//! path without it, for an issuer with `replay: reject` (one Redis round trip per request) and
//! one without single use or limits (no Redis call at all, counted from `/metrics`), beside
//! Redis's own ceiling: `PING` round trips per second from the driver.
//!
//! Redis is Debian's `redis-server` (`STSBRIDGE_LOAD_REDIS_SERVER`, or the one on `PATH`), started
//! on 127.0.0.1 and a free port without persistence, on the driver's CPU, killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{
    DRIVER_CPU, Line, Options, Server, bridge_config, client, each, measure, median_line,
    read_pool, verdict,
};

/// What the shared-state runs found, for the table and the verdicts.
pub struct Figures {
    /// Best round of each run, in table order.
    pub lines: Vec<Line>,
    /// `PING` round trips per second from the driver, `connections` in flight on one connection.
    pub ping_rate: f64,
    /// Connections the `PING` loop kept in flight.
    pub ping_in_flight: usize,
    /// `admit` round trips the server without single use or limits made during its runs.
    pub admits_without_single_use: u64,
    /// `admit` round trips the single-use server on Redis made during its runs, and the answers
    /// it gave in them (every round included, not only the median one).
    pub admits_with_single_use: (u64, usize),
}

/// A running `redis-server`.
struct Redis {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server() -> PathBuf {
    if let Some(p) = std::env::var_os("STSBRIDGE_LOAD_REDIS_SERVER") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("redis-server"))
                .find(|p| p.is_file())
        })
        .expect("redis-server is not installed (apt-get install redis-server, or set STSBRIDGE_LOAD_REDIS_SERVER)")
}

impl Redis {
    /// Starts a server on a free loopback port (redis-server has no `--port 0`: one is bound by
    /// the OS, read and released) and waits until it answers `PING`.
    fn start(pinned: bool) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a directory for redis");
        let mut cmd = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", DRIVER_CPU]).arg(redis_server());
            c
        } else {
            Command::new(redis_server())
        };
        let child = cmd
            .args([
                "--port",
                &port.to_string(),
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
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        let redis = Redis {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// `PING` round trips per second: `in_flight` loops on one multiplexed connection (as stsbridge
/// keeps one connection and sends every exchange's script on it), for `seconds`.
async fn ping_rate(url: &str, in_flight: usize, seconds: u64) -> f64 {
    let client = redis::Client::open(url).expect("redis url");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let mut conn = conn.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                while Instant::now() < until {
                    let pong: String = redis::cmd("PING")
                        .query_async(&mut conn)
                        .await
                        .expect("PING");
                    assert_eq!(pong, "PONG");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("ping loop");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `stsbridge_shared_state_seconds_count{op="admit"}` from the server's `/metrics` (0 when the
/// series does not exist yet: no admission was ever sent).
async fn admits(server: &Server) -> u64 {
    let mut conn = client::Connection::open(server.addr)
        .await
        .expect("connect");
    let answer = conn
        .send(&client::get("/metrics", "-"))
        .await
        .expect("metrics");
    assert_eq!(answer.status, 200, "/metrics answered {}", answer.status);
    String::from_utf8_lossy(&answer.body)
        .lines()
        .find_map(|l| l.strip_prefix(r#"stsbridge_shared_state_seconds_count{op="admit"} "#))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// Starts Redis and four servers, then alternates the `PING` ceiling and the four runs
/// `o.rounds` times, keeping the median round of each. The single-use pool (`replay`) holds fresh-`jti`
/// tokens, each used once over all runs (the first one to warm up); the others use the
/// `distinct` pool, and the `repeated` token for their first exchange.
pub async fn run(dir: &Path, o: &Options, sts_url: &str, mappings: &Path, pinned: bool) -> Figures {
    let replay_pool = read_pool(dir, "replay");
    let plain_pool = read_pool(dir, "distinct");
    let warm_token = read_pool(dir, "repeated")[0].clone();
    let redis = Redis::start(pinned);
    let url = redis.url();
    // (name, single use, shared state)
    let variants: [(&'static str, bool, bool); 4] = [
        ("replay: reject, in-process store", true, false),
        ("replay: reject, shared_state on Redis", true, true),
        ("no single use or limits, no shared_state", false, false),
        ("no single use or limits, shared_state", false, true),
    ];
    let mut servers = Vec::new();
    for (i, (_, replay, shared)) in variants.iter().enumerate() {
        let config = bridge_config(
            dir,
            &format!("shared-{i}"),
            "RS256",
            sts_url,
            mappings,
            &super::Extra {
                replay: *replay,
                redis_url: shared.then(|| url.clone()),
            },
        );
        let config_arg = config.display().to_string();
        let (server, _) = Server::spawn(dir, "bridge", &["serve", "--config", &config_arg], pinned);
        super::wait_ready(&server).await;
        // One exchange first, so the credential is cached before any run: token 0 of the
        // single-use pool (never used again on that server), the repeated token otherwise.
        let warm = if *replay {
            &replay_pool[0]
        } else {
            &warm_token
        };
        let answer = client::Connection::open(server.addr)
            .await
            .expect("connect")
            .send(&client::get("/v1/credentials/bench-aws", warm))
            .await
            .expect("first exchange");
        assert_eq!(answer.status, 200, "first exchange:\n{}", server.log());
        servers.push(server);
    }
    let admits_before = [admits(&servers[1]).await, admits(&servers[3]).await];
    let mut single_use_answers = 0;

    let replay_share = (replay_pool.len() - 1) / (2 * o.rounds);
    let plain_share = plain_pool.len() / o.rounds;
    let mut kept: Vec<Vec<Line>> = (0..variants.len()).map(|_| Vec::new()).collect();
    let mut ping = 0.0_f64;
    for round in 0..o.rounds {
        ping = ping.max(ping_rate(&url, o.connections, o.seconds).await);
        for (i, ((name, replay, _), server)) in variants.iter().zip(&servers).enumerate() {
            // Single use: a share of fresh tokens nobody has presented yet, per run.
            let tokens = if *replay {
                let at = 1 + (2 * round + i) * replay_share;
                Arc::new(replay_pool[at..at + replay_share].to_vec())
            } else {
                Arc::new(plain_pool[round * plain_share..(round + 1) * plain_share].to_vec())
            };
            let requests = each(tokens, |t| client::get("/v1/credentials/bench-aws", t));
            let line = measure(name, server, o, Duration::ZERO, Duration::ZERO, requests).await;
            if i == 1 {
                single_use_answers += line.run.requests;
            }
            kept[i].push(line);
        }
    }
    let admits_with_single_use = admits(&servers[1]).await - admits_before[0];
    let admits_without_single_use = admits(&servers[3]).await - admits_before[1];
    drop(servers);
    drop(redis);
    Figures {
        lines: kept.into_iter().map(median_line).collect(),
        ping_rate: ping,
        ping_in_flight: o.connections,
        admits_without_single_use,
        admits_with_single_use: (admits_with_single_use, single_use_answers),
    }
}

/// Prints the shared-state verdicts: the single-use path against the same path without Redis and
/// against what one Redis round trip per request allows; the path without single use, which must
/// make no Redis call at all.
pub fn report(f: &Figures) {
    let ratio = |a: f64, b: f64| a / b.max(1e-9);
    let rate = |i: usize| f.lines[i].run.rate();
    println!(
        "  Redis PING ceiling: {:.0} round trips/s from the driver ({} in flight on one connection)",
        f.ping_rate, f.ping_in_flight
    );
    // One round trip per request allows at most the PING rate, and never more than the same
    // path does without Redis.
    let allowed = f.ping_rate.min(rate(0));
    println!(
        "  replay: reject with shared_state: {:.2} of the same path without it, {:.2} of the PING ceiling; {:.2} of what one round trip per request allows, min(PING, without) (target >= 0.80: {})",
        ratio(rate(1), rate(0)),
        ratio(rate(1), f.ping_rate),
        ratio(rate(1), allowed),
        verdict(ratio(rate(1), allowed) >= 0.8)
    );
    println!(
        "  replay: reject with shared_state: {} admit round trips to Redis for {} answers (one per request)",
        f.admits_with_single_use.0, f.admits_with_single_use.1
    );
    println!(
        "  no single use or limits with shared_state: {:.2} of the same path without it; {} admit round trips to Redis during its runs (stsbridge_shared_state_seconds_count{{op=\"admit\"}}; expected 0: {})",
        ratio(rate(3), rate(2)),
        f.admits_without_single_use,
        verdict(f.admits_without_single_use == 0)
    );
}
