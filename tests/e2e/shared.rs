//! More than one replica: state that must hold across replicas (single use of `jti`s, rate
//! limits) lives in a real Redis server (`shared_state.redis`), and a Redis that is down, hangs
//! or answers garbage never turns into an allow.

use stsbridge_e2e::TestIdp;
use stsbridge_e2e::redis::{Redis, SilentRedis};

use crate::cli::run;
use crate::{Setup, write_config};

#[test]
fn the_redis_harness_stops_and_starts_again_on_the_same_port() {
    let mut redis = Redis::start_with_password("harness-pass");
    assert_eq!(redis.cli(&["SET", "k", "v"]).trim(), "OK");
    let port = redis.port;
    redis.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    redis.start_again();
    assert_eq!(redis.port, port);
    // No persistence: a restarted server is empty.
    assert_eq!(redis.cli(&["EXISTS", "k"]).trim(), "0");

    let silent = SilentRedis::start();
    let _held = std::net::TcpStream::connect(("127.0.0.1", silent.port)).unwrap();
    for _ in 0..100 {
        if silent.accepted() == 1 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the silent server accepted nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_shared_state_and_notes_single_use_without_it() {
    let idp = TestIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let check = |extra: &str| {
        write_config(
            dir.path(),
            &idp,
            &Setup {
                trust_extra: "    replay: reject",
                extra,
                ..Setup::default()
            },
        );
        run(dir.path(), &["check", "--config", "stsbridge.yaml"])
    };
    let (code, out, err) = check("");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("note: replay: reject (ci) without shared_state is single-replica only"),
        "{out}"
    );

    let (code, out, err) =
        check("shared_state: { redis: { url: \"redis://127.0.0.1:6379/0\", timeout: 100ms } }");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("note:"), "{out}");

    let (code, _, err) = check("shared_state: { redis: { url: \"redis://redis.internal:6379\" } }");
    assert_eq!(code, 64);
    assert!(
        err.contains("stsbridge.yaml: shared_state.redis.url: \"redis://redis.internal:6379\" must use rediss://"),
        "{err}"
    );
}
