//! Audit: one JSON line per decision, to stdout or a file.
//!
//! The event names who asked (issuer, subject, a hash of the token's `jti`, client address), what
//! was decided and why, which rule and target, how the cache served it, and the upstream call; it
//! never holds a token, a credential secret or a key. Credential ids and `jti`s appear only as
//! truncated SHA-256 hashes, enough to correlate with a cloud's logs without replaying anything.
//!
//! Refused validations are summarized per client address (`summary`), so a flood of bad tokens
//! cannot fill the sink; every exchange whose token validated has its own event.
//!
//! Events are written by group commit: the events that arrive while a write is in flight are
//! written together by the next one, with one `write(2)`, and each request waits for the write
//! that holds its own event (no credential without an audit record; a failed write fails exactly
//! the requests whose events it held). No thread of its own: the first request to find no write
//! in flight yields once (so that the requests ready to run add their events), then the first of
//! them back writes; when it is done one of the waiting requests takes over.

pub mod summary;

pub use crate::clock::rfc3339;
pub use crate::digest::short_hash;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::AuditSinkConfig;
use summary::{Noted, Summarizer};

/// How long refused validations from one address are counted before their summary is written:
/// a flood writes at most two events per address in this time, and a summary is at most this old
/// (plus [`SUMMARY_TICK`]) when it reaches the sink.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// How often ended intervals are written.
const SUMMARY_TICK: Duration = Duration::from_secs(1);
/// Most addresses with an interval open at once; refusals from further addresses are counted in
/// one summary together. Each costs a few hundred bytes, so this is a few MiB at most.
const MAX_SUMMARIZED_ADDRESSES: usize = 10_000;

/// One decision.
#[derive(Debug, Default, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 time of the decision.
    pub time: String,
    /// The decision id, also returned to the caller.
    pub decision_id: String,
    /// `allow`, `deny` or `error`.
    pub outcome: &'static str,
    /// Stable reason code (`granted`, `no_matching_rule`, `expired`, `AccessDenied`...).
    pub reason: String,
    /// The HTTP endpoint (`credentials` or `token_exchange`).
    pub endpoint: &'static str,
    /// The caller.
    pub caller: Caller,
    /// The actor, for delegated exchanges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Caller>,
    /// What became of the subject token's own `act` claim: `kept` (stsbridge minted it, or its
    /// issuer has `accept_act: true`) or `dropped`. Absent when it had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_act: Option<&'static str>,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// The requested target.
    pub target: Option<String>,
    /// `aws`, `gcp`, `azure` or `jwt`.
    pub provider: Option<&'static str>,
    /// `hit`, `miss`, `coalesced` or `stale`.
    pub cache: Option<&'static str>,
    /// Upstream latency of the call that produced the credential.
    pub upstream_latency_ms: Option<u64>,
    /// The cloud's request id.
    pub upstream_request_id: Option<String>,
    /// When the credential expires (RFC 3339).
    pub credential_expiry: Option<String>,
    /// Hash of the credential's public id (access key id, token `jti`).
    pub credential_id_hash: Option<String>,
    /// `jti` of the assertion stsbridge minted for the cloud.
    pub assertion_jti: Option<String>,
    /// The HTTP request id (`X-Request-Id`), to join the event with logs and traces.
    pub request_id: Option<String>,
    /// Audit-mode rules that matched, with what each would have done: the staged rollout's
    /// record. Absent when none matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<Shadow>,
    /// The revocation that refused the exchange (reason `revoked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
    /// What to fix, for the operator: the trusted issuer a refused `iss` nearly matches, the
    /// audiences a refused `aud` is not among.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The event of a revocation created or removed through the API, or applied by this replica.
#[derive(Debug, Serialize)]
pub struct RevocationEvent<'a> {
    /// RFC 3339 time.
    pub time: String,
    /// `revocation_created`, `revocation_removed` or `revocation_applied`.
    pub event: &'static str,
    /// The id of the API request's decision (created, removed); absent for applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<&'a str>,
    /// The revocation as the API lists it (`id`, `kind`, `issuer`, `value`, `created`,
    /// `expires`, `reason`, `by`).
    pub revocation: serde_json::Value,
    /// Who asked (created, removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<&'a Caller>,
    /// The HTTP request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

impl AuditEvent {
    /// The event of a request as it arrives, before anything is decided: its time, decision
    /// id, endpoint, target, client address and certificate, and request id.
    pub fn opened(
        now: std::time::SystemTime,
        decision_id: &str,
        endpoint: &'static str,
        target: &str,
        client: Option<std::net::SocketAddr>,
        client_names: &[String],
        request_id: Option<&str>,
    ) -> AuditEvent {
        AuditEvent {
            time: rfc3339(now),
            decision_id: decision_id.to_owned(),
            endpoint,
            target: Some(target.to_owned()),
            caller: Caller {
                client_addr: client.map(|a| a.to_string()),
                client_certificate: client_names
                    .iter()
                    .find(|n| !n.starts_with(crate::tls::SPIFFE_SCHEME))
                    .cloned(),
                client_spiffe_id: client_names
                    .iter()
                    .find(|n| n.starts_with(crate::tls::SPIFFE_SCHEME))
                    .cloned(),
                ..Caller::default()
            },
            request_id: request_id.map(str::to_owned),
            ..AuditEvent::default()
        }
    }
}

/// An audit-mode rule that matched.
#[derive(Debug, Clone, Serialize)]
pub struct Shadow {
    /// The rule.
    pub rule: String,
    /// `allow` or `deny`: its effect, had it been enforced.
    pub would: &'static str,
}

/// Who asked.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Caller {
    /// Trust entry name (or the raw `iss` of an untrusted token, truncated).
    pub issuer: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// Hash of `jti`.
    pub jti_hash: Option<String>,
    /// Client socket address.
    pub client_addr: Option<String>,
    /// The first DNS name of the caller's verified client certificate (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// The SPIFFE ID of the caller's verified client certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_spiffe_id: Option<String>,
    /// Whether the token passed validation; when false, `subject` and `jti_hash` are what an
    /// unverified token claimed.
    pub verified: bool,
}

/// An audit file that follows rotation: when the path is removed or replaced (logrotate's move),
/// the next event goes to a new file at the path rather than into an unlinked inode.
struct AuditFileSink {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    /// When the path was last checked for rotation.
    checked: Instant,
    /// How often it is checked.
    check_every: Duration,
}

/// How often the audit file's path is checked for rotation: a `stat` per event would cost more
/// than the event's own write. Events written between a rotation and the next check go to the
/// moved file, which logrotate keeps.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

impl AuditFileSink {
    fn open(path: &Path, check_every: Duration) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let meta = file.metadata()?;
        Ok(AuditFileSink {
            path: path.to_path_buf(),
            file,
            identity: (meta.dev(), meta.ino()),
            checked: Instant::now(),
            check_every,
        })
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        if self.checked.elapsed() >= self.check_every {
            self.checked = Instant::now();
            let current = std::fs::metadata(&self.path)
                .ok()
                .map(|m| (m.dev(), m.ino()));
            if current != Some(self.identity) {
                tracing::info!(path = %self.path.display(), "the audit file was moved or removed; opening a new one");
                *self = AuditFileSink::open(&self.path, self.check_every)?;
            }
        }
        self.file.write_all(line)
    }
}

enum Sink {
    Stdout,
    File(Mutex<AuditFileSink>),
    /// A sink whose every write the test decides.
    #[cfg(test)]
    Scripted(Box<ScriptedWrite>),
}

/// A test's stand-in for the sink's write.
#[cfg(test)]
type ScriptedWrite = dyn Fn(&[u8]) -> io::Result<()> + Send + Sync;

/// The events of one write: those that arrived while the write before it was in flight.
#[derive(Default)]
struct Batch {
    /// How its write went, once written (a failure's kind and text, for every event in it).
    written: OnceLock<Result<(), (io::ErrorKind, String)>>,
    /// Wakes its events' requests when it is written, and when the write before it is done
    /// (one of them then writes it).
    wake: tokio::sync::Notify,
}

/// Group commit's state: the lines waiting, the batch they make, and whether a write is in flight.
#[derive(Default)]
struct Commit {
    pending: Vec<u8>,
    batch: Arc<Batch>,
    writing: bool,
}

/// Where events go.
pub struct Audit {
    sink: Sink,
    summaries: Mutex<Summarizer>,
    commit: Mutex<Commit>,
}

impl Audit {
    /// Opens the configured sink (a file is created 0600 and appended to).
    pub fn open(config: &AuditSinkConfig) -> io::Result<Audit> {
        Self::open_checking_every(config, ROTATION_CHECK)
    }

    fn open_checking_every(config: &AuditSinkConfig, check_every: Duration) -> io::Result<Audit> {
        let sink = match config {
            AuditSinkConfig::Stdout => Sink::Stdout,
            AuditSinkConfig::File(path) => {
                Sink::File(Mutex::new(AuditFileSink::open(path, check_every)?))
            }
        };
        Ok(Self::with_sink(sink))
    }

    fn with_sink(sink: Sink) -> Audit {
        Audit {
            sink,
            summaries: Mutex::new(Summarizer::new(SUMMARY_INTERVAL, MAX_SUMMARIZED_ADDRESSES)),
            commit: Mutex::default(),
        }
    }

    /// Writes every pending summary as of `now` (the open intervals cut short), then flushes what
    /// the sink buffers to the disk (stdout is unbuffered here). For shutdown.
    pub fn flush(&self, now: SystemTime) -> io::Result<()> {
        let pending = self.summarizer().drain(now);
        let written = pending.iter().try_for_each(|s| self.write(s));
        let synced = match &self.sink {
            Sink::Stdout => io::stdout().lock().flush(),
            Sink::File(file) => file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .file
                .sync_data(),
            #[cfg(test)]
            Sink::Scripted(_) => Ok(()),
        };
        written.and(synced)
    }

    /// Writes one event as one line, together with the events of other requests that arrived
    /// while the previous write was in flight, and returns once the write that holds it is done.
    /// Fails when that write fails; the caller then refuses to hand out the credential (no
    /// credential without an audit record) unless the config says `on_failure: open`.
    pub async fn record(&self, event: &AuditEvent) -> io::Result<()> {
        let line = line_of(event)?;
        let (batch, idle) = {
            let mut commit = self.committer();
            commit.pending.extend_from_slice(&line);
            (Arc::clone(&commit.batch), !commit.writing)
        };
        if idle {
            // Let the requests that are ready to run reach their own events first, so that they
            // join the next write: on one worker thread nothing else runs while a write is in
            // flight, so without this every batch would hold one event. Nobody holds the write
            // across this await (it is taken below, and given back before any other await), so a
            // request dropped here cannot stall the others.
            tokio::task::yield_now().await;
        }
        loop {
            let wake = batch.wake.notified();
            let mut wake = std::pin::pin!(wake);
            // Registered before the checks: a wake between them and the await is not lost.
            wake.as_mut().enable();
            if let Some(written) = batch.written.get() {
                return written
                    .clone()
                    .map_err(|(kind, text)| io::Error::new(kind, text));
            }
            // The write before this batch is done and nobody has taken this one: take it.
            let lead = !std::mem::replace(&mut self.committer().writing, true);
            if lead {
                self.write_batch();
                continue;
            }
            wake.await;
        }
    }

    /// Writes the pending batch (the caller has set `writing`), then hands over: the batch's
    /// requests learn how it went, and the next batch's are woken so that one of them writes it.
    fn write_batch(&self) {
        let (lines, batch) = {
            let mut commit = self.committer();
            (
                std::mem::take(&mut commit.pending),
                std::mem::take(&mut commit.batch),
            )
        };
        let written = if lines.is_empty() {
            Ok(())
        } else {
            self.write_bytes(&lines)
        };
        // Set once: this is the only write of this batch.
        let _ = batch
            .written
            .set(written.map_err(|e| (e.kind(), e.to_string())));
        let next = {
            let mut commit = self.committer();
            commit.writing = false;
            Arc::clone(&commit.batch)
        };
        batch.wake.notify_waiters();
        next.wake.notify_waiters();
    }

    fn committer(&self) -> std::sync::MutexGuard<'_, Commit> {
        self.commit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes a revocation's event as one line.
    pub fn record_revocation(&self, event: &RevocationEvent<'_>) -> io::Result<()> {
        self.write(event)
    }

    /// Records the event of a request whose token never validated (so it yielded nothing) from
    /// `client` at `now`: written at once when it is the first from that address in its interval,
    /// otherwise counted in the address's summary.
    pub async fn record_unverified(
        &self,
        event: &AuditEvent,
        client: Option<IpAddr>,
        now: SystemTime,
    ) -> io::Result<()> {
        let noted = self
            .summarizer()
            .note(client, &event.reason, &event.decision_id, now);
        match noted {
            Noted::WriteInFull => self.record(event).await,
            Noted::Counted => Ok(()),
        }
    }

    /// Writes the summaries of the intervals ended by `now`.
    pub fn write_due(&self, now: SystemTime) -> io::Result<()> {
        let due = self.summarizer().due(now);
        due.iter().try_for_each(|s| self.write(s))
    }

    fn summarizer(&self) -> std::sync::MutexGuard<'_, Summarizer> {
        self.summaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes one event at once, on its own (summaries, revocations: not on an exchange's path).
    fn write(&self, event: &impl Serialize) -> io::Result<()> {
        self.write_bytes(&line_of(event)?)
    }

    /// One write of whole lines to the sink.
    fn write_bytes(&self, lines: &[u8]) -> io::Result<()> {
        match &self.sink {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(lines)?;
                out.flush()
            }
            Sink::File(file) => file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .write(lines),
            #[cfg(test)]
            Sink::Scripted(write) => write(lines),
        }
    }
}

/// An event as one JSON line.
fn line_of(event: &impl Serialize) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// Writes ended summary intervals every `SUMMARY_TICK` until `audit` is dropped; a write that
/// fails goes to `failed` (the summaries it held are lost: they counted requests that were all
/// refused, so no credential goes unrecorded). Must run inside a tokio runtime.
pub fn spawn_summary_writer(
    audit: Weak<Audit>,
    failed: impl Fn(io::Error) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SUMMARY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(audit) = audit.upgrade() else {
                return;
            };
            if let Err(e) = audit.write_due(SystemTime::now()) {
                failed(e);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_868_799);
        assert_eq!(rfc3339(t), "2000-02-29T23:59:59Z");
    }

    #[test]
    fn hashes_are_short_and_stable() {
        assert_eq!(short_hash("ASIAEXAMPLE"), short_hash("ASIAEXAMPLE"));
        assert_eq!(short_hash("x").len(), 24);
        assert_ne!(short_hash("a"), short_hash("b"));
    }

    #[tokio::test]
    async fn file_sink_appends_one_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&AuditSinkConfig::File(path.clone())).unwrap();
        for id in ["a", "b"] {
            audit
                .record(&AuditEvent {
                    decision_id: id.into(),
                    outcome: "deny",
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["decision_id"], "b");
        assert_eq!(lines[0]["outcome"], "deny");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[cfg(test)]
mod summaries {
    use std::net::IpAddr;

    use super::*;

    #[tokio::test]
    async fn refused_validations_are_summarized_and_flushing_writes_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&AuditSinkConfig::File(path.clone())).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let client: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        for id in ["1", "2", "3"] {
            let event = AuditEvent {
                decision_id: id.into(),
                outcome: "error",
                reason: "expired".into(),
                ..Default::default()
            };
            audit.record_unverified(&event, client, now).await.unwrap();
        }
        // A granted exchange is always written in full.
        audit
            .record(&AuditEvent {
                decision_id: "4".into(),
                outcome: "allow",
                ..Default::default()
            })
            .await
            .unwrap();
        let lines = |path: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let written = lines(&path);
        assert_eq!(written.len(), 2);
        assert_eq!(written[0]["decision_id"], "1");
        assert_eq!(written[1]["decision_id"], "4");
        // Not due yet; flushing (at shutdown) writes it.
        audit.write_due(now + Duration::from_secs(1)).unwrap();
        assert_eq!(lines(&path).len(), 2);
        audit.flush(now + Duration::from_secs(2)).unwrap();
        let written = lines(&path);
        assert_eq!(written.len(), 3);
        let summary = &written[2];
        assert_eq!(summary["reason"], "validation_failures_summarized");
        assert_eq!(summary["count"], 2);
        assert_eq!(summary["reasons"], serde_json::json!({ "expired": 2 }));
        assert_eq!(summary["first_decision_id"], "1");
        assert_eq!(summary["decision_id"], serde_json::Value::Null);
        assert_eq!(summary["caller"]["client_addr"], "192.0.2.1");
    }
}

#[cfg(test)]
mod rotation {
    use super::*;

    #[tokio::test]
    async fn a_removed_or_rotated_audit_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit =
            Audit::open_checking_every(&AuditSinkConfig::File(path.clone()), Duration::ZERO)
                .unwrap();
        audit
            .record(&AuditEvent {
                decision_id: "1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        audit
            .record(&AuditEvent {
                decision_id: "2".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        audit
            .record(&AuditEvent {
                decision_id: "3".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(
            now.contains("\"decision_id\":\"3\"") && !now.contains("\"decision_id\":\"2\""),
            "{now}"
        );
        let rotated = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        assert!(rotated.contains("\"decision_id\":\"1\""));
    }

    #[tokio::test]
    async fn a_full_disk_is_an_error() {
        let audit = Audit::open(&AuditSinkConfig::File("/dev/full".into())).unwrap();
        assert!(audit.record(&AuditEvent::default()).await.is_err());
    }
}

#[cfg(test)]
mod group_commit {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn event(id: &str) -> AuditEvent {
        AuditEvent {
            decision_id: id.into(),
            outcome: "allow",
            ..Default::default()
        }
    }

    /// Three writes: the first is held until the test releases it (so that events pile up behind
    /// it), the second fails, the third succeeds. Each write's lines are reported.
    fn scripted() -> (Arc<Audit>, mpsc::Sender<()>, mpsc::Receiver<String>) {
        let (release, held) = mpsc::channel::<()>();
        let (report, written) = mpsc::channel::<String>();
        let held = Mutex::new(held);
        let report = Mutex::new(report);
        let writes = std::sync::atomic::AtomicUsize::new(0);
        let sink = Sink::Scripted(Box::new(move |lines: &[u8]| {
            let n = writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = report
                .lock()
                .unwrap()
                .send(String::from_utf8_lossy(lines).into_owned());
            match n {
                0 => {
                    held.lock().unwrap().recv().unwrap();
                    Ok(())
                }
                1 => Err(io::Error::new(io::ErrorKind::StorageFull, "no space left")),
                _ => Ok(()),
            }
        }));
        (Arc::new(Audit::with_sink(sink)), release, written)
    }

    fn ids(lines: &str) -> Vec<String> {
        lines
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["decision_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_that_arrive_during_a_write_are_written_together_and_fail_together() {
        let (audit, release, written) = scripted();
        // A writes alone, and is held in its write.
        let a = tokio::spawn({
            let audit = Arc::clone(&audit);
            async move { audit.record(&event("a")).await }
        });
        let first = tokio::task::spawn_blocking(move || {
            let lines = written.recv_timeout(Duration::from_secs(10)).unwrap();
            (lines, written)
        })
        .await
        .unwrap();
        let (first, written) = first;
        assert_eq!(ids(&first), ["a"]);
        // B, C and D arrive while A's write is in flight: they wait, unwritten.
        let mut later = Vec::new();
        for id in ["b", "c", "d"] {
            let audit = Arc::clone(&audit);
            later.push(tokio::spawn(async move { audit.record(&event(id)).await }));
        }
        while audit
            .committer()
            .pending
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!a.is_finished(), "A answered before its write was done");
        release.send(()).unwrap();
        assert!(a.await.unwrap().is_ok(), "A's own write succeeded");
        // One write for the three of them, which fails: each of them fails, with its cause.
        for outcome in later {
            let e = outcome.await.unwrap().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::StorageFull);
            assert_eq!(e.to_string(), "no space left");
        }
        let second = written.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut second_ids = ids(&second);
        second_ids.sort();
        assert_eq!(second_ids, ["b", "c", "d"]);
        // The failure was that batch's only: the next event is written and succeeds.
        audit.record(&event("e")).await.unwrap();
        assert_eq!(
            ids(&written.recv_timeout(Duration::from_secs(10)).unwrap()),
            ["e"]
        );
        assert!(written.try_recv().is_err(), "one write per batch");
    }

    #[tokio::test]
    async fn a_request_dropped_while_waiting_to_write_does_not_stall_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&AuditSinkConfig::File(path.clone())).unwrap();
        // Polled once, it stops at its yield before writing; then the request goes away (a
        // client that disconnected).
        {
            let a = event("a");
            assert!(futures::FutureExt::now_or_never(audit.record(&a)).is_none());
        }
        tokio::time::timeout(Duration::from_secs(10), audit.record(&event("b")))
            .await
            .expect("the next event is written")
            .unwrap();
        // The dropped request's event was already queued, and goes out with the next write.
        assert_eq!(ids(&std::fs::read_to_string(&path).unwrap()), ["a", "b"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_events_are_each_written_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Arc::new(Audit::open(&AuditSinkConfig::File(path.clone())).unwrap());
        let tasks: Vec<_> = (0..2_000)
            .map(|i| {
                let audit = Arc::clone(&audit);
                tokio::spawn(async move { audit.record(&event(&i.to_string())).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut seen = ids(&std::fs::read_to_string(&path).unwrap());
        seen.sort_by_key(|id| id.parse::<u32>().unwrap());
        let expected: Vec<String> = (0..2_000).map(|i: u32| i.to_string()).collect();
        assert_eq!(seen, expected);
    }
}
