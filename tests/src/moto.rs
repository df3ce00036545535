//! moto's server (the real AWS STS wire protocol), one per test process, on 127.0.0.1 and a port
//! from the OS. `tests/run.sh` installs it into `tests/.venv`; without it these tests fail with
//! instructions rather than skip.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

/// A running moto server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    // Held open: moto_server.py exits when its stdin closes, i.e. when this process ends.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The Python of the test venv (moto, boto3, the AWS CLI, google-auth, azure-identity).
pub fn python() -> PathBuf {
    venv_python("STSBRIDGE_TEST_PYTHON", ".venv", "moto[server]")
}

/// The Python named by `env`, or else the one of `tests/{venv}` that `tests/run.sh` installs;
/// without either the test fails with instructions rather than skips.
pub fn venv_python(env: &str, venv: &str, what: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(venv)
        .join("bin/python");
    assert!(
        python.exists(),
        "{what} is not installed: run `bash tests/run.sh`, which installs it into tests/{venv} \
         (or set {env} to a python that has it)"
    );
    python
}

/// A program installed in the test venv (`aws`, ...), next to its Python.
pub fn venv_program(name: &str) -> PathBuf {
    python().with_file_name(name)
}

/// The moto server of this test process, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("moto_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start moto's server");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("moto's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto printed {line:?} instead of its port"));
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    })
}

/// One request the [`RecordingProxy`] forwarded, with moto's answer.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request's path and query (`/` for every STS action).
    pub uri: String,
    /// The request's headers, names in lower case (a repeated header's values joined by `,`).
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body as a form (the STS query protocol).
    pub form: HashMap<String, String>,
    /// moto's answer (XML), empty when moto could not be reached.
    pub response: String,
}

impl Recorded {
    /// The text of the first `<tag>` element of moto's answer (`AccessKeyId`, `SessionToken`...).
    pub fn response_text(&self, tag: &str) -> Option<&str> {
        let open = format!("<{tag}>");
        let start = self.response.find(&open)? + open.len();
        let len = self.response[start..].find(&format!("</{tag}>"))?;
        Some(&self.response[start..start + len])
    }
}

/// A forwarding proxy in front of moto's server that records every request (headers, body and
/// form, so a test can read the web identity token stsbridge presented and check a hop's
/// signature) with moto's answer, and answers with moto's own response.
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl RecordingProxy {
    /// Starts a proxy to `upstream` on 127.0.0.1 and a port from the OS; it stops when the test's
    /// runtime ends.
    pub async fn start(upstream: &str) -> RecordingProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode, Uri};
        use axum::response::IntoResponse;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recording proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let upstream = upstream.to_owned();
        let client = reqwest::Client::new();
        let forward = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (recorded, upstream, client) =
                (Arc::clone(&recorded), upstream.clone(), client.clone());
            async move {
                let mut record = Recorded {
                    uri: uri.to_string(),
                    headers: HashMap::new(),
                    body: body.to_vec(),
                    form: crate::clouds::parse_form(&body),
                    response: String::new(),
                };
                let mut request = client.post(format!("{upstream}/")).body(body);
                for (name, value) in &headers {
                    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    record
                        .headers
                        .entry(name.as_str().to_owned())
                        .and_modify(|v| {
                            v.push(',');
                            v.push_str(&text);
                        })
                        .or_insert(text);
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                let answer = match request.send().await {
                    Ok(r) => {
                        let status = StatusCode::from_u16(r.status().as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                        let content_type = r
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("text/xml")
                            .to_owned();
                        let body = r.bytes().await.unwrap_or_default();
                        record.response = String::from_utf8_lossy(&body).into_owned();
                        (status, [("content-type", content_type)], body).into_response()
                    }
                    Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                };
                recorded.lock().expect("lock").push(record);
                answer
            }
        };
        let app = axum::Router::new().route("/", axum::routing::post(forward));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordingProxy { endpoint, requests }
    }

    /// The requests recorded since the last call, in the order moto answered them.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().expect("lock"))
    }
}
