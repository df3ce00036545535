//! The load driver's client: plain HTTP/1.1 over keep-alive connections, written by hand so the
//! driver costs a few microseconds per request and the server, not the client, is what is measured.
//! Each connection sends one request, reads the whole answer, and sends the next (a closed loop, as
//! SDKs and agents behave).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer the driver reads (a credential answer is about 1.5 KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Builds the bytes of request number `i`, or `None` when there is nothing left to send (a pool of
/// distinct tokens is used up).
pub type Requests = Arc<dyn Fn(usize) -> Option<Arc<[u8]>> + Send + Sync>;

/// A GET with a bearer token.
pub fn get(path: &str, token: &str) -> Arc<[u8]> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
    .into()
}

/// A form POST.
pub fn post_form(path: &str, body: &str) -> Arc<[u8]> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

/// One answer.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// One keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects.
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends one request and reads its whole answer; returns the status and the body's range in
    /// the connection's buffer.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, usize)> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::other("the server closed the connection"));
            }
            let Some(head_end) = find(&self.buf, b"\r\n\r\n") else {
                if self.buf.len() > MAX_RESPONSE_BYTES {
                    return Err(std::io::Error::other("response head too large"));
                }
                continue;
            };
            let (status, length) = parse_head(&self.buf[..head_end])?;
            let total = head_end + 4 + length;
            if total > MAX_RESPONSE_BYTES {
                return Err(std::io::Error::other("response too large"));
            }
            while self.buf.len() < total {
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(std::io::Error::other("the server closed the connection"));
                }
            }
            return Ok((status, head_end + 4));
        }
    }

    /// Sends one request and returns the answer.
    pub async fn send(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        let (status, body_at) = self.exchange(request).await?;
        Ok(Answer {
            status,
            body: self.buf[body_at..].to_vec(),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> std::io::Result<(u16, usize)> {
    let text = std::str::from_utf8(head).map_err(std::io::Error::other)?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let mut length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other("bad content-length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(std::io::Error::other("chunked answers are not expected"));
        }
    }
    Ok((status, length))
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Answers received in the measured window.
    pub requests: usize,
    /// Answers other than 200 in the measured window.
    pub failures: usize,
    /// The first failure's status and body, to say what went wrong.
    pub first_failure: Option<String>,
    /// The measured window (shorter than asked when the requests ran out).
    pub window: Duration,
    /// Latencies, sorted, in nanoseconds.
    pub latencies: Vec<u64>,
}

impl Run {
    /// Answers per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of latency.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Duration::from_nanos(self.latencies[rank - 1])
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<u64>,
    failures: usize,
    first_failure: Option<String>,
    last_answer: Option<Instant>,
}

/// Runs `connections` closed-loop connections against `addr`: requests during `warmup` are not
/// counted, then every answer in the next `measure` is. Stops early when `requests` runs out.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    measure: Duration,
    requests: Requests,
) -> std::io::Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + warmup;
    let end = start + measure;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let next = Arc::clone(&next);
        let requests = Arc::clone(&requests);
        let mut conn = Connection::open(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                latencies: Vec::with_capacity(1 << 16),
                ..Tally::default()
            };
            while let Some(request) = requests(next.fetch_add(1, Ordering::Relaxed)) {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let (status, body_at) = conn.exchange(&request).await?;
                let done = Instant::now();
                if sent >= start {
                    tally.latencies.push((done - sent).as_nanos() as u64);
                    tally.last_answer = Some(done);
                    if status != 200 {
                        tally.failures += 1;
                        if tally.first_failure.is_none() {
                            tally.first_failure = Some(format!(
                                "{status} {}",
                                String::from_utf8_lossy(&conn.buf[body_at..])
                            ));
                        }
                    }
                }
            }
            Ok::<_, std::io::Error>(tally)
        }));
    }
    let mut all = Run {
        requests: 0,
        failures: 0,
        first_failure: None,
        window: Duration::ZERO,
        latencies: Vec::new(),
    };
    let mut last = start;
    for task in tasks {
        let tally = task.await.map_err(std::io::Error::other)??;
        all.failures += tally.failures;
        if all.first_failure.is_none() {
            all.first_failure = tally.first_failure;
        }
        all.latencies.extend(tally.latencies);
        if let Some(t) = tally.last_answer {
            last = last.max(t);
        }
    }
    all.requests = all.latencies.len();
    all.window = last.min(end).saturating_duration_since(start);
    if all.window.is_zero() {
        all.window = measure;
    }
    all.latencies.sort_unstable();
    Ok(all)
}

/// Sends each request on its own connection, all at once (every connection is open before the
/// first request goes out), and returns the statuses.
pub async fn burst(addr: SocketAddr, requests: Vec<Arc<[u8]>>) -> std::io::Result<Vec<u16>> {
    let mut conns = Vec::with_capacity(requests.len());
    for _ in &requests {
        conns.push(Connection::open(addr).await?);
    }
    let go = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = Vec::with_capacity(requests.len());
    for (mut conn, request) in conns.into_iter().zip(requests) {
        let go = Arc::clone(&go);
        tasks.push(tokio::spawn(async move {
            go.wait().await;
            conn.exchange(&request).await.map(|(s, _)| s)
        }));
    }
    let mut statuses = Vec::with_capacity(tasks.len());
    for t in tasks {
        statuses.push(t.await.map_err(std::io::Error::other)??);
    }
    Ok(statuses)
}
