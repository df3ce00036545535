//! Records the git revision the binary is built from, for `stsbridge --version`:
//! `STSBRIDGE_GIT_REVISION` from the environment when set (an image build without `.git`), else
//! `git rev-parse --short=12 HEAD` of the checkout, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STSBRIDGE_GIT_REVISION");
    // The checkout's HEAD and the branch it names move with every commit.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let revision = std::env::var("STSBRIDGE_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric()))
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STSBRIDGE_GIT_REVISION={revision}");
}
