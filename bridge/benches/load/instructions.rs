//! `--only-instructions`: what a request costs stsbridge in user-space instructions, counted by
//! valgrind's callgrind, beside the same count for the HTTP ceiling (and, for the mint path, the
//! signature's own share). Instructions are counted, not timed: the same binary and inputs give
//! the same count whatever else the machine does, so a cut of a few percent that the timed runs
//! cannot resolve (their spread is ±5-20%) shows here. The kernel's share (the socket writes,
//! the audit file's) is not counted; the timed runs show it.
//!
//! Each server runs under `valgrind --tool=callgrind` (about fifty times slower); 1,000 requests
//! are sent per path over a few connections after a warm-up, between callgrind's `zero` and
//! `dump` (`callgrind_control`), and the dump's total is divided by the answers.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Extra, Server, bridge_config, client, each, mint_request, read_pool, repeat, wait_ready,
};

/// Counts the cached paths (one token repeated, a distinct token each request) and the mint path
/// in stsbridge, and the HTTP ceiling answering stsbridge's body, each under callgrind; prints
/// them.
pub async fn run(dir: &Path, sts_url: &str, mappings: &Path) {
    if !available() {
        println!(
            "load: --only-instructions needs valgrind (callgrind_control, callgrind_annotate)"
        );
        return;
    }
    println!(
        "\nstsbridge user-space instructions per answer (callgrind; {COUNTED} answers per path after {WARMUP} uncounted)"
    );
    let config = bridge_config(
        dir,
        "counted",
        "RS256",
        sts_url,
        mappings,
        &Extra::default(),
    );
    let config_arg = config.display().to_string();
    let (bridge, _) = Server::spawn_under(
        dir,
        "bridge",
        &["serve", "--config", &config_arg],
        &prefix(dir, "bridge"),
    );
    wait_ready(&bridge).await;
    let repeated = read_pool(dir, "repeated");
    let aws = client::get("/v1/credentials/bench-aws", &repeated[0]);
    let first = client::Connection::open(bridge.addr)
        .await
        .expect("connect")
        .send(&aws)
        .await
        .expect("first exchange");
    assert_eq!(
        first.status,
        200,
        "the first exchange failed:\n{}",
        bridge.log()
    );
    std::fs::write(dir.join("body.json"), &first.body).expect("body");
    let paths: [(&'static str, client::Requests, bool); 3] = [
        ("cached, one token repeated", repeat(aws), false),
        (
            "cached, a distinct token each request",
            each(read_pool(dir, "distinct"), |t| {
                client::get("/v1/credentials/bench-aws", t)
            }),
            false,
        ),
        (
            "RFC 8693 mint (RS256), new token each request",
            each(read_pool(dir, "mint"), mint_request),
            true,
        ),
    ];
    let mut counts = Vec::new();
    for (name, requests, signing) in paths {
        counts.push(count(dir, &bridge, "bridge", name, requests, signing).await);
    }
    drop(bridge);
    let (ceiling, _) = Server::spawn_under(dir, "ref-http", &[], &prefix(dir, "ref-http"));
    let body = client::get("/v1/credentials/bench-aws", &repeated[0]);
    let ceiling = count(
        dir,
        &ceiling,
        "ref-http",
        "HTTP ceiling (axum, same body)",
        repeat(body),
        false,
    )
    .await;
    report(&ceiling, &counts);
}

/// Connections per path: enough that the audit group commit writes batches, as under load.
const CONNECTIONS: usize = 8;

/// Answers sent before counting starts (caches, pools and lazy statics warmed).
const WARMUP: usize = 200;

/// Answers counted per path.
const COUNTED: usize = 1_000;

/// Requests sent per path, warm-up included (the token pools hold this many).
pub const PER_PATH: usize = WARMUP + COUNTED;

/// Whether callgrind is here.
fn available() -> bool {
    ["valgrind", "callgrind_control", "callgrind_annotate"]
        .iter()
        .all(|tool| {
            // `callgrind_annotate --version` prints to stderr and exits 255.
            Command::new(tool).arg("--version").output().is_ok_and(|o| {
                [&o.stdout, &o.stderr]
                    .iter()
                    .any(|out| String::from_utf8_lossy(out).contains(tool))
            })
        })
}

/// The command prefix that runs a server under callgrind, its dumps under `dir`/`role`.
fn prefix(dir: &Path, role: &str) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--quiet".into(),
        format!("--callgrind-out-file={}/callgrind-{role}.%p", dir.display()),
    ]
}

/// One counted path.
struct Count {
    /// What was sent.
    name: &'static str,
    /// Instructions per answer.
    per_request: f64,
    /// Of which inside `SigningKey::sign`, per answer (the mint path).
    signing: Option<f64>,
    /// Of which in SHA-256's block function, per answer. Natively it runs on the CPU's SHA
    /// extensions, which valgrind's CPU does not offer: here it counts about ten times what it
    /// weighs in time.
    hashing: f64,
}

/// Sends `requests` (`WARMUP` of them first, uncounted, then `COUNTED`) to `server` and returns
/// the instructions per counted answer.
async fn count(
    dir: &Path,
    server: &Server,
    role: &str,
    name: &'static str,
    requests: client::Requests,
    signing: bool,
) -> Count {
    let warm = Arc::clone(&requests);
    let warmup: client::Requests = Arc::new(move |i| (i < WARMUP).then(|| warm(i)).flatten());
    let warmed = answered(server, warmup).await;
    assert_eq!(warmed, WARMUP, "{name}: the warm-up was not answered");
    callgrind_control(server, "-z");
    let counted: client::Requests =
        Arc::new(move |i| (i < COUNTED).then(|| requests(WARMUP + i)).flatten());
    let answered = answered(server, counted).await;
    assert_eq!(answered, COUNTED, "{name}: not every request was answered");
    let dump = dump(dir, server, role);
    // Kept past the run (its directory is removed) for `callgrind_annotate`.
    let kept = std::env::temp_dir().join(format!(
        "stsbridge-callgrind-{}.out",
        name.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(4)
            .collect::<Vec<_>>()
            .join("-")
    ));
    if std::fs::copy(&dump, &kept).is_ok() {
        println!("  {name}: {}", kept.display());
    }
    let per = |total: u64| total as f64 / COUNTED as f64;
    let annotated = annotate(&dump);
    Count {
        name,
        per_request: per(total(&dump)),
        signing: signing.then(|| per(inclusive(&annotated, "SigningKey::sign"))),
        hashing: per(inclusive(&annotated, "sha256_block_data_order")),
    }
}

async fn answered(server: &Server, requests: client::Requests) -> usize {
    let run = client::run(
        server.addr,
        CONNECTIONS,
        Duration::ZERO,
        Duration::from_secs(3600),
        requests,
    )
    .await
    .expect("run");
    assert_eq!(run.failures, 0, "failed: {:?}", run.first_failure);
    run.requests
}

fn callgrind_control(server: &Server, what: &str) {
    let out = Command::new("callgrind_control")
        .arg(what)
        .arg(server.pid().to_string())
        .output()
        .expect("callgrind_control");
    assert!(
        out.status.success(),
        "callgrind_control {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Dumps the counters since the last zero; returns the dump's path.
fn dump(dir: &Path, server: &Server, role: &str) -> std::path::PathBuf {
    let prefix = format!("callgrind-{role}.{}", server.pid());
    let before = dumps(dir, &prefix).len();
    callgrind_control(server, "-d");
    // The dump is written by the server's own thread once it next runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = dumps(dir, &prefix);
        if now.len() > before {
            let newest = now.into_iter().max_by_key(|(n, _)| *n).expect("a dump").1;
            // Complete once its totals are written (the last line).
            if std::fs::read_to_string(&newest).is_ok_and(|t| t.contains("\ntotals:")) {
                return newest;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "callgrind wrote no dump for {prefix}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The dumps of one process: (sequence number, path).
fn dumps(dir: &Path, prefix: &str) -> Vec<(u32, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(prefix)?;
            // `PREFIX.N` for the Nth dump; `PREFIX` alone is the final one at exit.
            let n = rest.strip_prefix('.')?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect()
}

/// The dump's instruction total.
fn total(dump: &Path) -> u64 {
    let text = std::fs::read_to_string(dump).expect("dump");
    text.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("totals line")
}

/// `callgrind_annotate`'s listing of every function's inclusive instructions in `dump`.
fn annotate(dump: &Path) -> String {
    let out = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(dump)
        .output()
        .expect("callgrind_annotate");
    assert!(
        out.status.success(),
        "callgrind_annotate {}: {}",
        dump.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Inclusive instructions of the function whose name contains `function` in an [`annotate`]
/// listing (the largest such figure, so a dispatcher over the variants it calls; 0 if absent).
fn inclusive(annotated: &str, function: &str) -> u64 {
    annotated
        .lines()
        .filter(|l| l.contains(function))
        .filter_map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|n| n.replace(',', "").parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
}

/// Prints the counts, each against the ceiling's where it has one.
fn report(ceiling: &Count, counts: &[Count]) {
    println!(
        "  path (user-space instructions per answer, callgrind)      instructions  x HTTP ceiling"
    );
    println!(
        "  {:<56} {:>12.0}  {:>14}",
        ceiling.name, ceiling.per_request, "1.00"
    );
    for c in counts {
        println!(
            "  {:<56} {:>12.0}  {:>14.2}",
            c.name,
            c.per_request,
            c.per_request / ceiling.per_request
        );
        println!("    of which SHA-256: {:.0}", c.hashing);
        if let Some(signing) = c.signing {
            println!(
                "    of which the signature: {signing:.0} (its own hashing included); the rest: {:.0}",
                c.per_request - signing
            );
        }
    }
}
