//! The load driver: stsbridge under load next to two reference servers built for the purpose, in
//! the same run with the same client, every figure printed beside its ceiling as a ratio.
//!
//! `cargo bench -p stsbridge --bench load` (options after `--`: `--seconds N`, `--connections N`,
//! `--tokens N`, `--memory-entries N`, `--upstream-ms N`, `--rounds N`, `--only-shared-state`,
//! `--only-memory`, `--only-cold`, `--only-cached`, `--only-instructions`: see `instructions.rs`).
//!
//! The servers (stsbridge and the references) run as child processes of this binary on CPU 0 with
//! one tokio worker; the driver (client, stand-in STS) runs on CPU 1 (`taskset`; without it, or on
//! one CPU, nothing is pinned and the report says so). Tokens are RS256, signed before the run
//! with a key generated now; stsbridge trusts it through a JWKS file.
//!
//! What runs: the HTTP ceiling (axum answering stsbridge's exact body) and the cached path with
//! one token repeated; the verify ceiling (the same handler doing one RS256 verification with a
//! key parsed once) and the cached path with a distinct token every request; the cold path (a new
//! cache key every request, the stand-in STS's latency subtracted); the RFC 8693 mint path beside
//! the raw signing rate; coalescing (1,000 concurrent requests for one cold key, and over 100
//! keys, counted at the STS); resident memory per cached AWS credential; start to ready with
//! 10,000 rules; and the cached path with `shared_state` on a real Redis against the same path
//! without it, beside Redis's own `PING` ceiling (see `shared.rs`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    reason = "a benchmark: a failed setup step must stop it, and it prints its figures"
)]

mod client;
mod instructions;
mod shared;
mod stands;
#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use client::Run;
use serde_json::{Value, json};
use stsbridge::config::SigningAlgorithm;
use stsbridge::issuer::SigningKey;

const ROLE: &str = "STSBRIDGE_LOAD_ROLE";
const DIR: &str = "STSBRIDGE_LOAD_DIR";
const ARGS: &str = "STSBRIDGE_LOAD_ARGS";
const PINNED: &str = "STSBRIDGE_LOAD_PINNED";
const IDP: &str = "https://idp.bench.example";
const AUDIENCE: &str = "https://stsbridge.bench.example";
const SERVER_CPU: &str = "0";
const DRIVER_CPU: &str = "1";

#[derive(Debug, Clone)]
struct Options {
    seconds: u64,
    connections: usize,
    tokens: usize,
    memory_entries: usize,
    upstream_ms: u64,
    rounds: usize,
    /// Only the shared-state runs (`--only-shared-state`).
    only_shared_state: bool,
    /// Only the memory fill (`--only-memory`).
    only_memory: bool,
    /// Only the cold and mint paths (`--only-cold`).
    only_cold: bool,
    /// Only the cached paths and their ceilings (`--only-cached`).
    only_cached: bool,
    /// Only the instruction counts under callgrind (`--only-instructions`).
    only_instructions: bool,
    /// Name filters (`cargo bench -p stsbridge NAME` passes one to every bench).
    filters: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            seconds: 5,
            connections: 64,
            tokens: 100_000,
            memory_entries: 100_000,
            upstream_ms: 20,
            rounds: 5,
            only_shared_state: false,
            only_memory: false,
            only_cold: false,
            only_cached: false,
            only_instructions: false,
            filters: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} takes a number"))
            };
            match arg.as_str() {
                "--seconds" => o.seconds = value(arg)?.max(1),
                "--connections" => o.connections = value(arg)?.max(1) as usize,
                "--tokens" => o.tokens = value(arg)?.max(1000) as usize,
                "--memory-entries" => o.memory_entries = value(arg)?.max(1000) as usize,
                "--upstream-ms" => o.upstream_ms = value(arg)?,
                "--rounds" => o.rounds = value(arg)?.clamp(1, 10) as usize,
                "--only-shared-state" => o.only_shared_state = true,
                "--only-memory" => o.only_memory = true,
                "--only-cold" => o.only_cold = true,
                "--only-cached" => o.only_cached = true,
                "--only-instructions" => o.only_instructions = true,
                // What cargo and criterion pass to every bench binary.
                "--bench" => {}
                other if other.starts_with("--") => return Err(format!("unknown option {other}")),
                filter => o.filters.push(filter.to_owned()),
            }
        }
        Ok(o)
    }
}

// The allocator of the stsbridge binary, since this binary also runs the service under test.
#[global_allocator]
static ALLOCATOR: stsbridge::Allocator = stsbridge::Allocator;

fn main() -> ExitCode {
    match std::env::var(ROLE).as_deref() {
        Ok("bridge") => stsbridge::cli::main(),
        Ok("ref-http") => reference(stands::Reference::Http),
        Ok("ref-verify") => reference(stands::Reference::Verify),
        Ok("driver") => driver(),
        Ok("sign-rate") => {
            let alg = match std::env::args().nth(1).as_deref() {
                Some("ES256") => SigningAlgorithm::Es256,
                _ => SigningAlgorithm::Rs256,
            };
            println!("{}", sign_rate(alg));
            ExitCode::SUCCESS
        }
        _ => parent(),
    }
}

/// The first process: reads the options, generates the IdP's keys and every token the runs need
/// (on all CPUs), then runs the driver pinned to its CPU.
fn parent() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        // `cargo test --benches` and `cargo bench -- --list`: nothing to check here.
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::from(64);
        }
    };
    // A name filter that is not this bench (`cargo bench -p stsbridge ten_thousand`) skips it.
    if !options.filters.is_empty() && !options.filters.iter().any(|f| "load".contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    prepare(dir.path(), &options);
    println!(
        "load: keys and {} tokens ready in {:.1} s",
        prepared_tokens(&options),
        started.elapsed().as_secs_f64()
    );
    let me = std::env::current_exe().expect("own path");
    let mut cmd = if pinning() {
        let mut c = Command::new("taskset");
        c.args(["-c", DRIVER_CPU]).arg(&me);
        c
    } else {
        Command::new(&me)
    };
    let status = cmd
        .env(ROLE, "driver")
        .env(PINNED, if pinning() { "1" } else { "0" })
        .env(DIR, dir.path())
        .env(ARGS, args.join("\u{1f}"))
        .status()
        .expect("run the driver");
    if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Whether servers and driver get a CPU each.
fn pinning() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset")
            .args(["-c", SERVER_CPU, "true"])
            .status()
            .is_ok_and(|s| s.success())
}

/// How many tokens [`prepare`] signs for these options.
fn prepared_tokens(o: &Options) -> usize {
    if o.only_instructions {
        return 1 + 2 * instructions::PER_PATH;
    }
    let mut n = o.memory_entries;
    if o.only_memory {
        return n;
    }
    n += 1;
    if !o.only_cold {
        n += 2 * o.tokens + 1;
    }
    if o.only_shared_state || o.only_cached {
        return n;
    }
    n + (1 + o.rounds) * cold_tokens(o) + 101
}

fn cold_tokens(o: &Options) -> usize {
    // The cold and mint paths are bounded by RSA signing (a few thousand per second on one CPU).
    (4_000 * o.seconds as usize).max(4_000)
}

struct Keys {
    rsa: SigningKey,
    ec: SigningKey,
}

/// Writes `count` tokens, one per line, signed on every CPU.
fn pool(
    dir: &Path,
    name: &str,
    key: &SigningKey,
    count: usize,
    sub: impl Fn(usize) -> String + Sync,
) {
    let now = unix_now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads);
    let parts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let sub = &sub;
                s.spawn(move || {
                    let mut out = String::new();
                    for i in (t * chunk)..((t + 1) * chunk).min(count) {
                        out.push_str(&support::token(
                            key,
                            (IDP, AUDIENCE),
                            &sub(i),
                            "payments",
                            &format!("{}-{i}", sub(i)),
                            now,
                        ));
                        out.push('\n');
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signer"))
            .collect()
    });
    std::fs::write(dir.join(name), parts.concat()).expect("write pool");
}

fn prepare(dir: &Path, o: &Options) {
    let keys = Keys {
        rsa: SigningKey::generate(SigningAlgorithm::Rs256)
            .expect("RSA key")
            .0,
        ec: SigningKey::generate(SigningAlgorithm::Es256)
            .expect("EC key")
            .0,
    };
    let jwks = json!({ "keys": [keys.rsa.public_jwk(), keys.ec.public_jwk()] });
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).expect("jwks");
    if o.only_instructions {
        let n = instructions::PER_PATH;
        pool(dir, "repeated", &keys.rsa, 1, |_| "bench-cached".into());
        pool(dir, "distinct", &keys.rsa, n, |_| "bench-cached".into());
        pool(dir, "mint", &keys.rsa, n, |i| format!("bench-mint-{i}"));
        return;
    }
    // ES256 for the memory fill: 100,000 exchanges at RSA's signing rate would take minutes.
    pool(dir, "memory", &keys.ec, o.memory_entries, |i| {
        format!("bench-mem-{i}")
    });
    if o.only_memory {
        return;
    }
    pool(dir, "repeated", &keys.rsa, 1, |_| "bench-cached".into());
    if !o.only_cold {
        pool(dir, "distinct", &keys.rsa, o.tokens, |_| {
            "bench-cached".into()
        });
        // Single use: every token its own `jti` (`bench-replay-N`), one cached credential.
        pool(dir, "replay", &keys.rsa, o.tokens + 1, |_| {
            "bench-replay".into()
        });
    }
    if o.only_shared_state || o.only_cached {
        return;
    }
    pool(dir, "cold", &keys.rsa, cold_tokens(o), |i| {
        format!("bench-cold-{i}")
    });
    pool(dir, "mint", &keys.rsa, cold_tokens(o) * o.rounds, |i| {
        format!("bench-mint-{i}")
    });
    pool(dir, "one-key", &keys.rsa, 1, |_| "bench-one-key".into());
    pool(dir, "hundred-keys", &keys.rsa, 100, |i| {
        format!("bench-key-{i}")
    });
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_pool(dir: &Path, name: &str) -> Arc<Vec<String>> {
    Arc::new(
        std::fs::read_to_string(dir.join(name))
            .expect("pool")
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

fn reference(kind: stands::Reference) -> ExitCode {
    let dir = PathBuf::from(std::env::var_os(DIR).expect("dir"));
    let body = std::fs::read(dir.join("body.json")).expect("body");
    let jwks: Value = serde_json::from_slice(&std::fs::read(dir.join("jwks.json")).expect("jwks"))
        .expect("jwks json");
    let rsa = &jwks["keys"][0];
    let part = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(rsa[name].as_str().expect("component"))
            .expect("base64url")
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(stands::reference(kind, body, (part("n"), part("e")))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reference server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A server process on the server CPU.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(dir: &Path, role: &str, args: &[&str], pinned: bool) -> (Server, Instant) {
        let prefix = if pinned {
            vec!["taskset".into(), "-c".into(), SERVER_CPU.into()]
        } else {
            Vec::new()
        };
        Server::spawn_under(dir, role, args, &prefix)
    }

    /// [`Server::spawn`] with the command run by `prefix` (`taskset`, `valgrind`).
    fn spawn_under(dir: &Path, role: &str, args: &[&str], prefix: &[String]) -> (Server, Instant) {
        let me = std::env::current_exe().expect("own path");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&me);
                c
            }
            None => Command::new(&me),
        };
        let log = dir.join(format!("{role}-{}.log", unix_nanos()));
        let started = Instant::now();
        let child = cmd
            .args(args)
            .env(ROLE, role)
            .env(DIR, dir)
            .env("TOKIO_WORKER_THREADS", "1")
            .env("STSBRIDGE_LOG", "warn,stsbridge=info")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start a server");
        // Minutes: a server under valgrind starts fifty times slower.
        let deadline = Instant::now() + Duration::from_secs(300);
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("listening on ") {
                let rest = &text[at + "listening on ".len()..];
                let addr = rest.split_whitespace().next().unwrap_or_default();
                if let Ok(addr) = addr.parse() {
                    break addr;
                }
            }
            assert!(Instant::now() < deadline, "{role} did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(2));
        };
        (Server { child, addr, log }, started)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time used so far (user + system).
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks())
    }

    /// Resident memory.
    fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What a stsbridge config adds to the plain one.
#[derive(Default)]
struct Extra {
    /// The IdP's trust entry gets `replay: reject`.
    replay: bool,
    /// `shared_state` on this Redis.
    redis_url: Option<String>,
}

/// Writes a stsbridge config for `dir` (its own key directory) and the mappings in `mappings`.
fn bridge_config(
    dir: &Path,
    name: &str,
    alg: &str,
    sts_url: &str,
    mappings: &Path,
    extra: &Extra,
) -> PathBuf {
    let keys = dir.join(format!("keys-{name}"));
    if !keys.exists() {
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&keys)
            .expect("key dir");
    }
    let config = format!(
        r#"version: 1
listen: 127.0.0.1:0
issuer:
  url: https://stsbridge.bench.example
  keys: {{ dir: {keys}, algorithm: {alg} }}
trust:
  - name: bench-idp
    issuer: {IDP}
    audiences: [{AUDIENCE}]
    jwks: {{ file: {jwks} }}
    algorithms: [RS256, ES256]
    max_token_lifetime: 2h
{replay}mappings: {mappings}
providers:
  aws: {{ region: us-east-1, endpoint: "{sts_url}" }}
cache: {{ max_entries: 1000000 }}
audit: {{ file: {audit} }}
{shared}"#,
        replay = if extra.replay {
            "    replay: reject\n"
        } else {
            ""
        },
        shared = extra
            .redis_url
            .as_ref()
            .map_or(String::new(), |url| format!(
                "shared_state: {{ redis: {{ url: \"{url}\" }} }}\n"
            )),
        keys = keys.display(),
        jwks = dir.join("jwks.json").display(),
        mappings = mappings.display(),
        audit = dir.join(format!("audit-{name}.jsonl")).display(),
    );
    let path = dir.join(format!("stsbridge-{name}.yaml"));
    std::fs::write(&path, config).expect("config");
    path
}

const TARGETS: &str = r#"version: 1
targets:
  - name: bench-aws
    aws:
      role_arn: arn:aws:iam::123456789012:role/bench
      duration: 1h
      session_name: "{{ subject }}"
      session_tags:
        namespace: '{{ claims["kubernetes.io"].namespace }}'
  - name: bench-jwt
    jwt:
      audience: bench-api
      scopes: [orders:read]
      lifetime: 5m
"#;

fn write_mappings(dir: &Path, rules: usize) -> PathBuf {
    let mappings = dir.join(format!("mappings-{rules}"));
    std::fs::create_dir_all(&mappings).expect("mappings dir");
    std::fs::write(mappings.join("targets.yaml"), TARGETS).expect("targets");
    let mut text = String::from(
        r#"version: 1
rules:
  - name: bench-workloads
    issuer: bench-idp
    subject: { glob: "bench-*" }
    claims: { "/kubernetes.io/namespace": payments }
    allow: [bench-aws, bench-jwt]
  - name: bench-blocked
    issuer: bench-idp
    subject: bench-blocked
    deny: ["*"]
"#,
    );
    for i in 0..rules {
        text.push_str(&format!(
            "  - name: user-{i}\n    issuer: bench-idp\n    subject: user-{i}\n    allow: [bench-aws]\n"
        ));
    }
    std::fs::write(mappings.join("rules.yaml"), text).expect("rules");
    mappings
}

/// Waits until `/readyz` answers 200.
async fn wait_ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let probe = client::get("/readyz", "-");
    loop {
        if let Ok(mut c) = client::Connection::open(server.addr).await
            && let Ok(a) = c.send(&probe).await
            && a.status == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One measured line of the report.
struct Line {
    name: &'static str,
    run: Run,
    cpu_per_request: Duration,
    subtract: Duration,
    /// The lowest and highest req/s over the rounds of this run (its own rate when it ran once).
    spread: (f64, f64),
}

async fn measure(
    name: &'static str,
    server: &Server,
    o: &Options,
    warmup: Duration,
    subtract: Duration,
    requests: client::Requests,
) -> Line {
    let cpu = server.cpu();
    let run = client::run(
        server.addr,
        o.connections,
        warmup,
        Duration::from_secs(o.seconds),
        requests,
    )
    .await
    .expect("load run");
    let used = server.cpu().saturating_sub(cpu);
    if run.failures > 0 {
        println!(
            "  warning: {name}: {} of {} answers were not 200; first: {}",
            run.failures,
            run.requests,
            run.first_failure.as_deref().unwrap_or("")
        );
    }
    let total = run.requests.max(1) as u32;
    let rate = run.rate();
    Line {
        name,
        cpu_per_request: used / total,
        run,
        subtract,
        spread: (rate, rate),
    }
}

/// The round with the median req/s of a run's rounds, carrying the lowest and highest req/s of
/// them all as its spread.
fn median_line(mut rounds: Vec<Line>) -> Line {
    rounds.sort_by(|a, b| a.run.rate().total_cmp(&b.run.rate()));
    let spread = (
        rounds.first().map_or(0.0, |l| l.run.rate()),
        rounds.last().map_or(0.0, |l| l.run.rate()),
    );
    let mut line = rounds.swap_remove(rounds.len() / 2);
    line.spread = spread;
    line
}

/// The median of per-round figures, with their lowest and highest.
fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |i: usize| values.get(i).copied().unwrap_or(0.0);
    (
        at(values.len() / 2),
        at(0),
        at(values.len().saturating_sub(1)),
    )
}

fn repeat(request: Arc<[u8]>) -> client::Requests {
    Arc::new(move |_| Some(Arc::clone(&request)))
}

fn each(
    pool: Arc<Vec<String>>,
    make: impl Fn(&str) -> Arc<[u8]> + Send + Sync + 'static,
) -> client::Requests {
    Arc::new(move |i| pool.get(i).map(|t| make(t)))
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn print_line(line: &Line) {
    let q = |p| line.run.quantile(p).saturating_sub(line.subtract);
    let rate = line.run.rate();
    println!(
        "  {:<44} {:>9.0} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8}",
        line.name,
        rate,
        format!(
            "±{:.0}%",
            (line.spread.1 - line.spread.0) / 2.0 / rate.max(1e-9) * 100.0
        ),
        micros(q(0.5)),
        micros(q(0.99)),
        micros(q(0.999)),
        micros(line.cpu_per_request),
        line.run.requests
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// [`sign_rate`] in a process on the server's CPU.
fn sign_rate_on_server_cpu(dir: &Path, alg: &str, pinned: bool) -> f64 {
    let me = std::env::current_exe().expect("own path");
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", SERVER_CPU]).arg(&me);
        c
    } else {
        Command::new(&me)
    };
    let out = cmd
        .arg(alg)
        .env(ROLE, "sign-rate")
        .env(DIR, dir)
        .output()
        .expect("sign-rate");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a rate")
}

/// Signatures per second on one thread with a key kept in memory.
fn sign_rate(alg: SigningAlgorithm) -> f64 {
    let key = SigningKey::generate(alg).expect("key").0;
    let message = [b'x'; 600];
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(2) {
        key.sign(&message).expect("sign");
        n += 1;
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}

fn driver() -> ExitCode {
    let dir = PathBuf::from(std::env::var_os(DIR).expect("dir"));
    let args: Vec<String> = std::env::var(ARGS)
        .unwrap_or_default()
        .split('\u{1f}')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let o = Options::parse(&args).expect("options");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(drive(&dir, &o));
    ExitCode::SUCCESS
}

async fn drive(dir: &Path, o: &Options) {
    // Decided by the parent: the driver itself is already confined to one CPU.
    let pinned = std::env::var(PINNED).is_ok_and(|v| v == "1");
    let sts = Arc::new(stands::Sts::default());
    let sts_url = stands::sts(Arc::clone(&sts)).await.expect("stand-in STS");
    let mappings = write_mappings(dir, 0);
    if o.only_instructions {
        instructions::run(dir, &sts_url, &mappings).await;
        return;
    }
    if o.only_memory {
        print_header(pinned, o);
        println!("{}", memory_run(dir, o, &sts_url, &mappings, pinned).await);
        return;
    }
    if o.only_shared_state {
        print_header(pinned, o);
        let figures = shared::run(dir, o, &sts_url, &mappings, pinned).await;
        figures.lines.iter().for_each(print_line);
        println!("\nagainst the targets (ratios from this run):");
        shared::report(&figures);
        return;
    }
    let config = bridge_config(dir, "main", "RS256", &sts_url, &mappings, &Extra::default());
    let config_arg = config.display().to_string();
    let (bridge, _) = Server::spawn(dir, "bridge", &["serve", "--config", &config_arg], pinned);
    wait_ready(&bridge).await;

    let repeated = read_pool(dir, "repeated");
    let aws_request = client::get("/v1/credentials/bench-aws", &repeated[0]);
    let mut conn = client::Connection::open(bridge.addr)
        .await
        .expect("connect");
    let first = conn.send(&aws_request).await.expect("first exchange");
    assert_eq!(
        first.status,
        200,
        "the first exchange failed: {}\n{}",
        String::from_utf8_lossy(&first.body),
        bridge.log()
    );
    std::fs::write(dir.join("body.json"), &first.body).expect("body");
    let (http_ceiling, _) = Server::spawn(dir, "ref-http", &[], pinned);
    let (verify_ceiling, _) = Server::spawn(dir, "ref-verify", &[], pinned);

    if o.only_cold {
        print_header(pinned, o);
        let cold = cold_and_mint(dir, o, &bridge, &sts, pinned).await;
        print_targets(&[mint_target(&cold)]);
        print_cold(&cold, o);
        return;
    }
    print_header(pinned, o);
    // Each reference and the stsbridge run it is compared with alternate, `rounds` times; each
    // line is the round with the median req/s, with the spread over the rounds, and each ratio
    // the median of the rounds' own ratios (a reference and its stsbridge run in one round ran
    // seconds apart, so a noisy minute on a shared machine moves both).
    let warm = Duration::from_secs(1);
    let distinct_pool = read_pool(dir, "distinct");
    let share = distinct_pool.len() / o.rounds;
    let mut kept: [Vec<Line>; 4] = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for round in 0..o.rounds {
        let tokens = Arc::new(distinct_pool[round * share..(round + 1) * share].to_vec());
        let distinct_requests = || {
            each(Arc::clone(&tokens), |t| {
                client::get("/v1/credentials/bench-aws", t)
            })
        };
        let runs: [(&'static str, &Server, Duration, client::Requests); 4] = [
            (
                "HTTP ceiling (axum, same body)",
                &http_ceiling,
                warm,
                repeat(Arc::clone(&aws_request)),
            ),
            (
                "cached, one token repeated",
                &bridge,
                warm,
                repeat(Arc::clone(&aws_request)),
            ),
            (
                "verify ceiling (+ one RS256 verify)",
                &verify_ceiling,
                Duration::ZERO,
                distinct_requests(),
            ),
            (
                "cached, a distinct token each request",
                &bridge,
                Duration::ZERO,
                distinct_requests(),
            ),
        ];
        for (slot, (name, server, warmup, requests)) in kept.iter_mut().zip(runs) {
            slot.push(measure(name, server, o, warmup, Duration::ZERO, requests).await);
        }
    }
    let rate_ratios = |a: usize, b: usize| {
        median(
            kept[a]
                .iter()
                .zip(&kept[b])
                .map(|(x, y)| x.run.rate() / y.run.rate().max(1e-9))
                .collect(),
        )
    };
    let p99_ratios = |a: usize, b: usize| {
        median(
            kept[a]
                .iter()
                .zip(&kept[b])
                .map(|(x, y)| {
                    x.run.quantile(0.99).as_secs_f64()
                        / y.run.quantile(0.99).as_secs_f64().max(1e-9)
                })
                .collect(),
        )
    };
    let cached_targets = [
        (
            "cached, repeated token:",
            rate_ratios(1, 0),
            "of the HTTP ceiling's req/s",
            0.6,
            true,
        ),
        (
            "cached, repeated token: p99",
            p99_ratios(1, 0),
            "x the HTTP ceiling's",
            2.0,
            false,
        ),
        (
            "cached, distinct tokens:",
            rate_ratios(3, 2),
            "of the verify ceiling's req/s",
            0.75,
            true,
        ),
        (
            "cached, distinct tokens: p99",
            p99_ratios(3, 2),
            "x the verify ceiling's",
            2.0,
            false,
        ),
    ];
    let [http, cached, verify, distinct] = kept.map(median_line);
    for line in [&http, &cached, &verify, &distinct] {
        print_line(line);
    }
    if o.only_cached {
        print_targets(&cached_targets);
        return;
    }
    // The shared-state runs while the STS still answers at once; their own servers, so the
    // distinct tokens above are new to them.
    let shared = shared::run(dir, o, &sts_url, &mappings, pinned).await;
    shared.lines.iter().for_each(print_line);

    let cold = cold_and_mint(dir, o, &bridge, &sts, pinned).await;

    // Coalescing: every connection is open before the first request is sent; the STS answers
    // slowly so that all of them arrive while the first call is in flight.
    sts.set_latency(Duration::from_millis(500));
    let one = read_pool(dir, "one-key");
    let before = sts.calls();
    let statuses = client::burst(
        bridge.addr,
        (0..1000)
            .map(|_| client::get("/v1/credentials/bench-aws", &one[0]))
            .collect(),
    )
    .await
    .expect("burst");
    let one_key_calls = sts.calls() - before;
    let one_key_ok = statuses.iter().filter(|s| **s == 200).count();
    let hundred = read_pool(dir, "hundred-keys");
    let before = sts.calls();
    let statuses = client::burst(
        bridge.addr,
        (0..1000)
            .map(|i| client::get("/v1/credentials/bench-aws", &hundred[i % 100]))
            .collect(),
    )
    .await
    .expect("burst");
    let hundred_calls = sts.calls() - before;
    let hundred_ok = statuses.iter().filter(|s| **s == 200).count();
    sts.set_latency(Duration::ZERO);
    drop(http_ceiling);
    drop(verify_ceiling);
    drop(conn);
    drop(bridge);

    let memory = memory_run(dir, o, &sts_url, &mappings, pinned).await;

    // Start to ready with 10,000 rules.
    let big = write_mappings(dir, 10_000);
    let config = bridge_config(dir, "main", "RS256", &sts_url, &big, &Extra::default());
    let config_arg = config.display().to_string();
    let (big_bridge, spawned) =
        Server::spawn(dir, "bridge", &["serve", "--config", &config_arg], pinned);
    wait_ready(&big_bridge).await;
    let start_to_ready = spawned.elapsed();
    drop(big_bridge);

    println!(
        "\nagainst the targets (medians of the {} rounds' own ratios, lowest-highest):",
        o.rounds
    );
    print_targets(&cached_targets);
    print_targets(&[mint_target(&cold)]);
    print_cold(&cold, o);
    println!(
        "  coalescing: 1,000 concurrent requests for one cold key made {one_key_calls} STS call(s) (expected 1: {}), {one_key_ok} answered 200",
        verdict(one_key_calls == 1 && one_key_ok == 1000)
    );
    println!(
        "  coalescing: 1,000 requests over 100 cold keys made {hundred_calls} STS calls (expected 100: {}), {hundred_ok} answered 200",
        verdict(hundred_calls == 100 && hundred_ok == 1000)
    );
    println!("{memory}");
    println!(
        "  start to ready with 10,000 rules: {:.0} ms (target < 1000: {})",
        start_to_ready.as_secs_f64() * 1e3,
        verdict(start_to_ready < Duration::from_secs(1))
    );
    shared::report(&shared);
}

/// The cold path and the mint path's figures.
struct Cold {
    cold: Line,
    /// Median, lowest and highest of the rounds' mint/raw-signing ratios.
    mint_ratio: (f64, f64, f64),
}

/// The cold path (a new cache key every request, the STS slowed to `--upstream-ms`) and the mint
/// path alternating with the raw signing rate; prints their lines.
async fn cold_and_mint(
    dir: &Path,
    o: &Options,
    bridge: &Server,
    sts: &stands::Sts,
    pinned: bool,
) -> Cold {
    let upstream = Duration::from_millis(o.upstream_ms);
    sts.set_latency(upstream);
    let calls = sts.calls();
    let cold = measure(
        "cold, new key each request (STS time taken off)",
        bridge,
        o,
        Duration::ZERO,
        upstream,
        each(read_pool(dir, "cold"), |t| {
            client::get("/v1/credentials/bench-aws", t)
        }),
    )
    .await;
    let cold_calls = sts.calls() - calls;
    print_line(&cold);
    // Alternating too: the raw signing rate on the server's CPU, then the mint run; the ratio is
    // the median of the rounds' own.
    let mint_pool = read_pool(dir, "mint");
    let mint_share = mint_pool.len() / o.rounds;
    let (mut rs256_rates, mut mints) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        rs256_rates.push(sign_rate_on_server_cpu(dir, "RS256", pinned));
        let tokens = Arc::new(mint_pool[round * mint_share..(round + 1) * mint_share].to_vec());
        let line = measure(
            "RFC 8693 mint (RS256), new token each request",
            bridge,
            o,
            Duration::ZERO,
            Duration::ZERO,
            each(tokens, mint_request),
        )
        .await;
        mints.push(line);
    }
    let mint_ratio = median(
        mints
            .iter()
            .zip(&rs256_rates)
            .map(|(m, r)| m.run.rate() / r.max(1e-9))
            .collect(),
    );
    let (rs256_rate, _, _) = median(rs256_rates);
    let mint = median_line(mints);
    let es256_rate = sign_rate_on_server_cpu(dir, "ES256", pinned);
    print_line(&mint);
    println!(
        "  raw signing with a kept key on the server's CPU: RS256 {rs256_rate:.0}/s, ES256 {es256_rate:.0}/s"
    );
    if cold_calls != cold.run.requests {
        println!(
            "  note: the cold run made {cold_calls} STS calls for {} answers",
            cold.run.requests
        );
    }
    sts.set_latency(Duration::ZERO);
    Cold { cold, mint_ratio }
}

/// An RFC 8693 exchange of `token` for the JWT target.
fn mint_request(token: &str) -> Arc<[u8]> {
    client::post_form(
        "/oauth2/token",
        &format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=bench-jwt&subject_token={token}"
        ),
    )
}

/// A ratio against its target: what, (median, lowest, highest), how it reads, the target, and
/// whether more is better.
type RatioTarget = (&'static str, (f64, f64, f64), &'static str, f64, bool);

fn mint_target(cold: &Cold) -> RatioTarget {
    (
        "RFC 8693 mint:",
        cold.mint_ratio,
        "of the raw RS256 signing rate",
        0.8,
        true,
    )
}

fn print_targets(targets: &[RatioTarget]) {
    for &(what, (r, low, high), reads, target, more_is_better) in targets {
        let (met, sign) = if more_is_better {
            (r >= target, ">=")
        } else {
            (r <= target, "<=")
        };
        println!(
            "  {what} {r:.2} ({low:.2}-{high:.2}) {reads} (target {sign} {target:.2}: {})",
            verdict(met)
        );
    }
}

fn print_cold(cold: &Cold, o: &Options) {
    println!(
        "  cold path: {:.0} exchanges/s with {} connections and {} ms STS latency; {} CPU per exchange",
        cold.cold.run.rate(),
        o.connections,
        o.upstream_ms,
        micros(cold.cold.cpu_per_request)
    );
}

/// Memory: a second stsbridge, ES256 issuer, filled with distinct credentials; the report line.
async fn memory_run(
    dir: &Path,
    o: &Options,
    sts_url: &str,
    mappings: &Path,
    pinned: bool,
) -> String {
    let config = bridge_config(dir, "memory", "ES256", sts_url, mappings, &Extra::default());
    let config_arg = config.display().to_string();
    let (memory_bridge, _) =
        Server::spawn(dir, "bridge", &["serve", "--config", &config_arg], pinned);
    wait_ready(&memory_bridge).await;
    let memory_pool = read_pool(dir, "memory");
    let warmup_requests = 200;
    let warmed = client::run(
        memory_bridge.addr,
        o.connections,
        Duration::ZERO,
        Duration::from_secs(600),
        each(Arc::new(memory_pool[..warmup_requests].to_vec()), |t| {
            client::get("/v1/credentials/bench-aws", t)
        }),
    )
    .await
    .expect("warm");
    // Filled in two halves: the first half also fills what is bounded whatever the number of
    // credentials (the validated-token cache, 4,096 tokens), so the second half's growth is the
    // cost of one more cached credential.
    let rss_before = memory_bridge.rss_bytes();
    let filled_started = Instant::now();
    let middle = warmup_requests + (memory_pool.len() - warmup_requests) / 2;
    let mut fills = Vec::new();
    let mut rss_middle = 0;
    for range in [warmup_requests..middle, middle..memory_pool.len()] {
        fills.push(
            client::run(
                memory_bridge.addr,
                o.connections,
                Duration::ZERO,
                Duration::from_secs(600),
                each(Arc::new(memory_pool[range].to_vec()), |t| {
                    client::get("/v1/credentials/bench-aws", t)
                }),
            )
            .await
            .expect("fill"),
        );
        if rss_middle == 0 {
            rss_middle = memory_bridge.rss_bytes();
        }
    }
    let fill_time = filled_started.elapsed();
    let rss_after = memory_bridge.rss_bytes();
    let granted = |r: &Run| r.requests - r.failures;
    let entries = granted(&fills[0]) + granted(&fills[1]);
    let per_entry = rss_after.saturating_sub(rss_before) as f64 / entries.max(1) as f64;
    let marginal = rss_after.saturating_sub(rss_middle) as f64 / granted(&fills[1]).max(1) as f64;
    let failures = warmed.failures + fills[0].failures + fills[1].failures;
    if failures > 0 {
        println!(
            "  warning: memory fill: {failures} failures; first: {}",
            fills
                .iter()
                .find_map(|f| f.first_failure.as_deref())
                .unwrap_or("")
        );
    }
    drop(memory_bridge);
    format!(
        "  memory: {entries} cached AWS credentials added {:.1} MiB resident = {per_entry:.0} bytes each, all included; the second half added {marginal:.0} bytes per credential (target <= 2048: {}); filled in {:.1} s",
        rss_after.saturating_sub(rss_before) as f64 / (1024.0 * 1024.0),
        verdict(marginal <= 2048.0),
        fill_time.as_secs_f64()
    )
}

fn print_header(pinned: bool, o: &Options) {
    println!(
        "\nstsbridge load benchmark: servers {} with one tokio worker, driver {}; {} connections, {} s per run",
        if pinned { "on CPU 0" } else { "unpinned" },
        if pinned { "on CPU 1" } else { "unpinned" },
        o.connections,
        o.seconds
    );
    println!(
        "  {:<44} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "run (median round)", "req/s", "spread", "p50", "p99", "p99.9", "CPU/req", "answers"
    );
}
