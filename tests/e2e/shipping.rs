//! Shipping, as far as a machine with no container engine and no cluster can test it:
//!
//! - the Kubernetes example renders (`kubectl kustomize`), validates against the Kubernetes
//!   schemas and meets Pod Security "restricted" (`tests/kubernetes/check.py`), and the checker
//!   refuses a manifest that loosens either;
//! - the service starts from the image's root filesystem (`packaging/image-root.sh`, what the
//!   Dockerfile copies onto an empty image) as uid 65532 with a read-only root, every file mounted
//!   where and with the modes the Deployment's volumes give it (Secrets 0440 root:fsGroup behind
//!   the kubelet's `..data` symlinks), its embedded config and mappings pass `stsbridge check` and
//!   the mapping tests, its probes' paths and ports answer, and it mints a token;
//! - the agent's exec probes reach it;
//! - the Dockerfile passes hadolint and the systemd unit `systemd-analyze verify`.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};
use stsbridge_e2e::moto::{python, venv_program};
use stsbridge_e2e::redis::Redis;
use stsbridge_e2e::tls::localhost_pki;
use stsbridge_e2e::{BridgeProcess, TestIdp, run_ok};

use crate::{BIN, copy_dir, repo};

/// The image's user, and the pods' `runAsUser` and `fsGroup`.
const UID: u32 = 65532;

/// `kubectl kustomize DIR`.
fn kustomize(dir: &Path) -> String {
    run_ok(Command::new("kubectl").arg("kustomize").arg(dir)).0
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// Runs the checker over rendered files; returns (success, stdout + stderr).
fn check_manifests(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(python())
        .arg(repo().join("tests/kubernetes/check.py"))
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Renders the example under `example` the three ways it is applied (the base; the base with the
/// Prometheus Operator component, through an overlay outside it as a user writes one; the
/// workload) into `out`.
fn render_all(example: &Path, out: &Path) -> Vec<PathBuf> {
    let overlay = out.join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    let up = "../".repeat(overlay.components().count() - 1);
    let base = format!("{up}{}", example.to_str().unwrap().trim_start_matches('/'));
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{base}]\ncomponents: [{base}/components/prometheus-operator]\n"
        ),
    )
    .unwrap();
    let mut files = Vec::new();
    for (name, dir) in [
        ("service.yaml", overlay.clone()),
        ("workload.yaml", example.join("workload")),
    ] {
        let path = out.join(name);
        std::fs::write(&path, kustomize(&dir)).unwrap();
        files.push(path);
    }
    files
}

#[test]
fn the_kubernetes_example_renders_validates_and_meets_pod_security_restricted() {
    let out = tempfile::tempdir().unwrap();
    let files = render_all(&repo().join("examples/kubernetes"), out.path());
    let rendered = std::fs::read_to_string(&files[0]).unwrap();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "StatefulSet",
        "ServiceMonitor",
    ] {
        assert!(
            rendered.contains(&format!("\nkind: {kind}\n")),
            "no {kind} rendered"
        );
    }
    let (ok, report) = check_manifests(&files);
    assert!(ok, "{report}");
    assert!(report.contains("pod specs meet restricted"), "{report}");

    // The checker is no formality: a copy that drops a capability rule, the preStop delay and
    // probes the agent on the node's loopback again is refused for each.
    let copy = out.path().join("loosened");
    copy_dir(&repo().join("examples/kubernetes"), &copy);
    let edit = |file: &str, from: &str, to: &str| {
        let path = copy.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "stsbridge.yaml",
        "capabilities: { drop: [ALL] }",
        "capabilities: { drop: [NET_RAW] }",
    );
    edit(
        "stsbridge.yaml",
        "sleep: { seconds: 5 }",
        "sleep: { seconds: 15 }",
    );
    edit(
        "workload/workload.yaml",
        r#"readinessProbe:
            exec: { command: [/usr/local/bin/stsbridge, probe, "http://127.0.0.1:8090/readyz"] }"#,
        "readinessProbe:\n            httpGet: { host: 127.0.0.1, path: /readyz, port: 8090 }",
    );
    let loosened = render_all(&copy, &out.path().join("loosened-out"));
    let (ok, report) = check_manifests(&loosened);
    assert!(!ok, "the checker passed a loosened manifest:\n{report}");
    for problem in [
        "container stsbridge: capabilities.drop must include ALL",
        "terminationGracePeriodSeconds 40 < preStop 15 + drain 30",
        "stsbridge-agent readinessProbe: port 8090 is not a container port",
        "stsbridge-agent readinessProbe: host set",
    ] {
        assert!(report.contains(problem), "no {problem:?} in:\n{report}");
    }
}

/// Why this machine cannot run the mount-namespace tests, if it cannot.
fn cannot_isolate() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: mount namespaces and uid 65532 need root".into());
    }
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .status();
    match probe {
        Ok(s) if s.success() => None,
        _ => Some("`unshare -m` is not available here".into()),
    }
}

/// A volume as the kubelet writes a Secret or ConfigMap: the files in a timestamped directory,
/// `..data` pointing at it, and each top-level name a symlink through `..data`; files `mode |
/// 0440` and directories setgid, all root:`fs_group`.
fn write_volume(dir: &Path, files: &BTreeMap<String, Vec<u8>>, mode: u32, fs_group: u32) {
    let stamp = dir.join("..2026_12_02_00_00_00.000000001");
    std::fs::create_dir_all(&stamp).unwrap();
    for (path, contents) in files {
        let file = stamp.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, contents).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode | 0o440)).unwrap();
        std::os::unix::fs::chown(&file, Some(0), Some(fs_group)).unwrap();
        let top = path.split('/').next().unwrap();
        if !dir.join(top).exists() {
            symlink(format!("..data/{top}"), dir.join(top)).unwrap();
        }
    }
    symlink(stamp.file_name().unwrap(), dir.join("..data")).unwrap();
    for d in [dir, &stamp] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o2755)).unwrap();
        std::os::unix::fs::chown(d, Some(0), Some(fs_group)).unwrap();
    }
}

/// The shell script that mounts `mounts` (host directory, path in the root, read-only) into
/// `root`, makes the root read-only, and runs the image's binary in it as uid and gid 65532 with
/// the script's arguments.
fn isolation_script(root: &Path, mounts: &[(PathBuf, String, bool)]) -> String {
    let root = root.to_str().unwrap();
    let mut script = format!(
        "set -e\nmount --bind '{root}' '{root}'\nmount -t proc proc '{root}/proc'\nmount --rbind /dev '{root}/dev'\n"
    );
    for (host, at, read_only) in mounts {
        let target = format!("{root}{at}");
        std::fs::create_dir_all(&target).unwrap();
        script.push_str(&format!(
            "mount --bind '{}' '{target}'\n",
            host.to_str().unwrap()
        ));
        if *read_only {
            script.push_str(&format!("mount -o remount,bind,ro '{target}'\n"));
        }
    }
    script.push_str(&format!(
        "mount -o remount,bind,ro '{root}'\nexec unshare --root='{root}' --wd=/ -S {UID} -G {UID} /usr/local/bin/stsbridge \"$@\"\n"
    ));
    script
}

fn isolated_args<'a>(script: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["-m", "--propagation", "private", "sh", "-c", script, "sh"];
    all.extend_from_slice(args);
    all
}

/// A new RSA key as the README tells operators to make one for the keys Secret.
fn openssl_key() -> Vec<u8> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_from_the_image_root_as_uid_65532_with_the_deployments_mounts() {
    if let Some(why) = cannot_isolate() {
        eprintln!("skipped: {why}");
        return;
    }
    let example = repo().join("examples/kubernetes");
    // The same but for the schema modeline, whose relative path differs.
    let without_modeline = |p: PathBuf| -> String {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("# yaml-language-server:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_modeline(example.join("mappings/serverless.yaml")),
        without_modeline(repo().join("mappings/serverless.yaml")),
        "examples/kubernetes/mappings/serverless.yaml is a copy of mappings/serverless.yaml"
    );
    let docs = documents(&kustomize(&example));
    let deployment = object(&docs, "Deployment", "stsbridge").expect("the Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "stsbridge");
    assert_eq!(pod["securityContext"]["runAsUser"], UID);
    let fs_group = u32::try_from(pod["securityContext"]["fsGroup"].as_u64().unwrap()).unwrap();
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..2], ["serve", "--config"]);
    let config_path = args[2];

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let status = Command::new(repo().join("packaging/image-root.sh"))
        .arg(BIN)
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success(), "packaging/image-root.sh failed");

    // What the cluster holds besides the rendered objects: the Secrets and the roots ConfigMap
    // that README.md has the operator create.
    let pki = localhost_pki();
    let password = "redis-password-0123456789abcdef";
    let redis = Redis::start_tls_with(&pki.cert_pem, &pki.key_pem, Some(password));
    let idp = TestIdp::start().await;
    let key_name = format!("key-{}.pem", stsbridge_e2e::idp::unix_now());
    let external: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = [
        (
            "stsbridge-signing-keys",
            BTreeMap::from([(key_name.clone(), openssl_key())]),
        ),
        (
            "stsbridge-tls",
            BTreeMap::from([
                ("tls.crt".to_owned(), pki.cert_pem.clone().into_bytes()),
                ("tls.key".to_owned(), pki.key_pem.clone().into_bytes()),
            ]),
        ),
        (
            "stsbridge-redis",
            BTreeMap::from([("password".to_owned(), password.as_bytes().to_vec())]),
        ),
        (
            "stsbridge-roots",
            BTreeMap::from([("roots.pem".to_owned(), pki.ca_pem.clone().into_bytes())]),
        ),
    ]
    .into_iter()
    .collect();

    // The embedded config as rendered, and the same with what only this machine can reach: a
    // loopback port, the test IdP as the cluster's service-account issuer, the test Redis.
    let config_map = |name: &str| object(&docs, "ConfigMap", name).map(|cm| &cm["data"]);
    let rendered_config = |volume: &Value| -> Option<String> {
        let name = volume["configMap"]["name"].as_str()?;
        name.starts_with("stsbridge-config").then(|| {
            config_map(name).unwrap()["stsbridge.yaml"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    };
    let volumes = pod["volumes"].as_array().unwrap();
    let original = volumes
        .iter()
        .find_map(rendered_config)
        .expect("the config volume");
    let mut local: Value = serde_yaml_ng::from_str(&original).unwrap();
    local["listen"] = json!("127.0.0.1:0");
    local["trust"][0]["issuer"] = json!(idp.issuer);
    local["trust"][0]["allow_insecure_loopback"] = json!(true);
    local["shared_state"]["redis"]["url"] = json!(redis.url());
    let local = serde_yaml_ng::to_string(&local).unwrap();

    // Every volume mount of the container, laid out as the kubelet does; twice, once per config.
    let layout = |config: &str, into: &Path| -> Vec<(PathBuf, String, bool)> {
        let mut mounts = Vec::new();
        for mount in container["volumeMounts"].as_array().unwrap() {
            let name = mount["name"].as_str().unwrap();
            let volume = volumes.iter().find(|v| v["name"] == name).unwrap();
            let (source, data, mode): (&str, BTreeMap<String, Vec<u8>>, u32) = if let Some(cm) =
                volume["configMap"]["name"].as_str()
            {
                let data = match config_map(cm) {
                    Some(_) if cm.starts_with("stsbridge-config") => {
                        BTreeMap::from([("stsbridge.yaml".to_owned(), config.as_bytes().to_vec())])
                    }
                    Some(data) => data
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                        .collect(),
                    None => external
                        .get(cm)
                        .unwrap_or_else(|| panic!("nothing for {cm}"))
                        .clone(),
                };
                (cm, data, 0o644)
            } else {
                let secret = volume["secret"]["secretName"].as_str().unwrap();
                let data = external
                    .get(secret)
                    .unwrap_or_else(|| panic!("nothing for {secret}"))
                    .clone();
                let mode = volume["secret"]["defaultMode"].as_u64().unwrap_or(0o644);
                (secret, data, u32::try_from(mode).unwrap())
            };
            let data = match volume
                .get("configMap")
                .or_else(|| volume.get("secret"))
                .and_then(|v| v["items"].as_array())
            {
                Some(items) => items
                    .iter()
                    .map(|i| {
                        let key = i["key"].as_str().unwrap();
                        let bytes = data
                            .get(key)
                            .unwrap_or_else(|| panic!("{source} has no {key}"));
                        (i["path"].as_str().unwrap().to_owned(), bytes.clone())
                    })
                    .collect(),
                None => data,
            };
            let host = into.join(name);
            write_volume(&host, &data, mode, fs_group);
            mounts.push((
                host,
                mount["mountPath"].as_str().unwrap().to_owned(),
                mount["readOnly"].as_bool().unwrap_or(false),
            ));
        }
        mounts
    };

    // The key as the kubelet leaves it with defaultMode 0400 and fsGroup: 0440 root:65532.
    let check_dir = dir.path().join("as-rendered");
    let mut mounts = layout(&original, &check_dir);
    let key_file = std::fs::metadata(check_dir.join("keys").join(&key_name)).unwrap();
    assert_eq!(key_file.permissions().mode() & 0o777, 0o440);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&key_file), fs_group);
    // `stsbridge check` and the mapping tests with the config exactly as rendered.
    mounts.push((
        repo().join("mappings/tests"),
        "/srv/mapping-tests".into(),
        true,
    ));
    let script = isolation_script(&root, &mounts);
    for args in [
        vec!["check", "--config", config_path],
        vec![
            "test",
            "--config",
            config_path,
            "/srv/mapping-tests/serverless.yaml",
        ],
        vec!["--version"],
    ] {
        run_ok(Command::new("unshare").args(isolated_args(&script, &args)));
    }

    // Serving, with the local config.
    let serve_dir = dir.path().join("serving");
    let mounts = layout(&local, &serve_dir);
    let script = isolation_script(&root, &mounts);
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bridge = BridgeProcess::spawn(
        "unshare",
        dir.path(),
        &isolated_args(&script, &["serve", "--config", config_path]),
        &env,
    )
    .await;
    let pid = bridge.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid_line}"
    );

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    // Each probe's path answers; its port is the container port the config listens on.
    let listen_port: u64 = original
        .lines()
        .find_map(|l| l.strip_prefix("listen: "))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .expect("listen in the rendered config");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        let port = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == get["port"] || p["containerPort"] == get["port"])
            .unwrap_or_else(|| panic!("{probe}: no container port {}", get["port"]));
        assert_eq!(port["containerPort"], listen_port, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}: the listener is TLS");
        let r = http
            .get(bridge.url(get["path"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "{probe} {}: {}",
            get["path"],
            r.text().await.unwrap()
        );
    }

    // A pod's token for the mapping the ConfigMap carries: the signing key (0440) signs it.
    let audience = &local_audience(&original);
    let token = idp.token(
        "system:serviceaccount:shop-web:frontend",
        json!({ "aud": audience }),
    );
    let r = http
        .post(bridge.url("/oauth2/token"))
        .form(&[
            ("grant_type", crate::GRANT),
            ("subject_token", token.as_str()),
            ("subject_token_type", crate::JWT),
            ("audience", "inventory-api"),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", bridge.stderr());
    let minted = crate::jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(minted["aud"], "inventory-api");
    assert!(
        !bridge.stderr().contains("Read-only file system"),
        "{}",
        bridge.stderr()
    );
}

fn local_audience(config: &str) -> String {
    let config: Value = serde_yaml_ng::from_str(config).unwrap();
    config["trust"][0]["audiences"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_exec_probes_reach_it_on_the_pods_loopback() {
    let docs = documents(&kustomize(&repo().join("examples/kubernetes/workload")));
    let deployment = object(&docs, "Deployment", "orders-fn").expect("the workload");
    let pod = &deployment["spec"]["template"]["spec"];
    let agent = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "stsbridge-agent")
        .expect("the agent, a native sidecar");
    assert_eq!(agent["restartPolicy"], "Always");
    let args: Vec<String> = agent["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .expect("--listen")
        .to_owned();

    // The agent with the manifest's arguments, its files and listen address local.
    let dir = tempfile::tempdir().unwrap();
    let pki = localhost_pki();
    std::fs::write(dir.path().join("ca.crt"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("token"), "a.b.c").unwrap();
    std::fs::write(dir.path().join("identity-header"), "0123456789abcdef0123").unwrap();
    let local: Vec<String> = args
        .iter()
        .map(|a| match a.split_once('=') {
            Some(("--bridge", _)) => "--bridge=https://127.0.0.1:9".into(),
            Some(("--ca-file", _)) => format!("--ca-file={}", dir.path().join("ca.crt").display()),
            Some(("--token-file", _)) => {
                format!("--token-file={}", dir.path().join("token").display())
            }
            Some(("--listen", _)) => "--listen=127.0.0.1:0".into(),
            Some(("--state-dir", _)) => {
                format!("--state-dir={}", dir.path().join("state").display())
            }
            Some(("--azure-identity-header-file", _)) => format!(
                "--azure-identity-header-file={}",
                dir.path().join("identity-header").display()
            ),
            _ => a.clone(),
        })
        .collect();
    let local: Vec<&str> = local.iter().map(String::as_str).collect();
    let process = BridgeProcess::spawn_listening(BIN, dir.path(), &local, &[]).await;
    let port = process.base.rsplit(':').next().unwrap().to_owned();

    let run_probe = |probe: &str| -> bool {
        let command: Vec<&str> = agent[probe]["exec"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{probe} is not an exec probe"))
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(command[0], "/usr/local/bin/stsbridge", "the image's binary");
        assert_eq!(command[1], "probe");
        let url = command[2];
        assert!(
            url.starts_with(&format!("http://{listen}/")),
            "{probe} probes {url}, the agent listens on {listen}"
        );
        let url = url.replace(&listen, &format!("127.0.0.1:{port}"));
        Command::new(BIN)
            .arg("probe")
            .arg(&url)
            .args(&command[3..])
            .status()
            .unwrap()
            .success()
    };
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert!(run_probe(probe), "{probe} failed against a ready agent");
    }
    // Unready without its token: the readiness probe says so, the liveness probe does not.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    assert!(!run_probe("readinessProbe"));
    assert!(run_probe("livenessProbe"));
    drop(process);
    assert!(
        !run_probe("livenessProbe"),
        "a probe of a stopped agent fails"
    );
}

#[test]
fn the_dockerfile_passes_hadolint_and_explains_any_ignored_rule() {
    let dockerfile = repo().join("Dockerfile");
    run_ok(
        Command::new(venv_program("hadolint"))
            .arg("--failure-threshold")
            .arg("info")
            .arg(&dockerfile),
    );
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("hadolint ignore") {
            assert!(
                i > 0 && lines[i - 1].starts_with('#') && !lines[i - 1].contains("hadolint"),
                "line {}: an ignored rule needs a comment line above saying why",
                i + 1
            );
        }
    }
    // What the image promises: uid 65532, the binary as the entrypoint, no shell to run.
    assert!(text.contains("\nFROM scratch\n"));
    assert!(text.contains("\nUSER 65532:65532\n"));
    assert!(text.contains("\nENTRYPOINT [\"stsbridge\"]\n"));
    assert!(text.contains("cargo build --release --locked"));
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: no systemd-analyze on this machine");
        return;
    };
    assert!(version.status.success());
    // verify checks that ExecStart's program exists: the unit as shipped, with the binary under
    // test at /usr/local/bin/stsbridge's place and the optional credential line switched on.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo().join("examples/systemd/stsbridge.service"))
        .unwrap()
        .replace("/usr/local/bin/stsbridge", BIN)
        .replace("#LoadCredential=", "LoadCredential=");
    for option in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=stsbridge",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(option), "the unit has no {option}");
    }
    std::fs::write(dir.path().join("stsbridge.service"), unit).unwrap();
    let (_, stderr) = run_ok(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join("stsbridge.service")),
    );
    assert!(
        !stderr.contains("stsbridge.service"),
        "systemd-analyze verify warned about the unit:\n{stderr}"
    );
}
