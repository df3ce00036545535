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
    if let Ok(p) = std::env::var("STSBRIDGE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "moto is not installed: run `bash tests/run.sh`, which installs moto's server into tests/.venv \
         (or set STSBRIDGE_TEST_PYTHON to a python that has moto[server])"
    );
    venv
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
