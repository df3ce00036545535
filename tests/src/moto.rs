//! moto's server (the real AWS STS wire protocol), one per test process, on 127.0.0.1 and a port
//! from the OS. `tests/run.sh` installs it into `tests/.venv`; without it these tests fail with
//! instructions rather than skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

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

/// A forwarding proxy in front of moto's server that records the form of every request (so a test
/// can read the web identity token stsbridge presented) and the body of every response (the
/// credentials moto handed out, a chained hop's intermediate ones included), and answers with
/// moto's own response.
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    requests: std::sync::Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>,
    responses: std::sync::Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    /// Starts a proxy to `upstream` on 127.0.0.1 and a port from the OS; it stops when the test's
    /// runtime ends.
    pub async fn start(upstream: &str) -> RecordingProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recording proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = std::sync::Arc::new(Mutex::new(Vec::new()));
        let recorded = std::sync::Arc::clone(&requests);
        let responses = std::sync::Arc::new(Mutex::new(Vec::new()));
        let answered = std::sync::Arc::clone(&responses);
        let upstream = upstream.to_owned();
        let client = reqwest::Client::new();
        let forward = move |headers: HeaderMap, body: Bytes| {
            let (recorded, answered, upstream, client) = (
                std::sync::Arc::clone(&recorded),
                std::sync::Arc::clone(&answered),
                upstream.clone(),
                client.clone(),
            );
            async move {
                recorded
                    .lock()
                    .expect("lock")
                    .push(crate::clouds::parse_form(&body));
                let mut request = client.post(format!("{upstream}/")).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                match request.send().await {
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
                        answered
                            .lock()
                            .expect("lock")
                            .push(String::from_utf8_lossy(&body).into_owned());
                        (status, [("content-type", content_type)], body).into_response()
                    }
                    Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                }
            }
        };
        let app = axum::Router::new().route("/", axum::routing::post(forward));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordingProxy {
            endpoint,
            requests,
            responses,
        }
    }

    /// The forms recorded since the last call, in order.
    pub fn take(&self) -> Vec<std::collections::HashMap<String, String>> {
        std::mem::take(&mut *self.requests.lock().expect("lock"))
    }

    /// The bodies of moto's responses so far, in order.
    pub fn responses(&self) -> Vec<String> {
        self.responses.lock().expect("lock").clone()
    }
}
