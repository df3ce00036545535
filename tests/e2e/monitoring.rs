//! The monitoring files of `examples/monitoring/`, proven against the real thing: `promtool`
//! checks the rules and runs their unit tests; the dashboards are what their generator writes; and
//! a real Prometheus server (Debian's package, on a free loopback port) scrapes a running
//! stsbridge while the test drives allows, denials, throttles, a cache hit and a refused token,
//! then evaluates every expression of the rules and of every dashboard panel through its HTTP
//! API: each must parse, and each about traffic that happened must return data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use stsbridge_e2e::moto::{moto, python};
use stsbridge_e2e::{free_port, json_of, run_ok};

use crate::{Setup, Stack, repo};

fn monitoring() -> PathBuf {
    repo().join("examples/monitoring")
}

fn rules_file() -> PathBuf {
    monitoring().join("prometheus/stsbridge-rules.yaml")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).unwrap()
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let (stdout, stderr) = run_ok(Command::new(program).args(args).current_dir(dir));
    stdout + &stderr
}

/// Every rule of the rules file: (alert or record name, expression).
fn rules() -> Vec<(String, bool, String)> {
    let doc = yaml(&rules_file());
    let mut all = Vec::new();
    for group in doc["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let (name, alert) = match (rule["alert"].as_str(), rule["record"].as_str()) {
                (Some(a), _) => (a, true),
                (None, Some(r)) => (r, false),
                _ => panic!("a rule with neither alert nor record: {rule}"),
            };
            all.push((
                name.to_owned(),
                alert,
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    all
}

#[test]
fn the_rules_pass_promtool_and_every_alert_has_a_firing_and_a_quiet_test() {
    let dir = monitoring().join("prometheus");
    let checked = run(
        "promtool",
        &["check", "rules", "stsbridge-rules.yaml"],
        &dir,
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run(
        "promtool",
        &["test", "rules", "stsbridge-rules.test.yaml"],
        &dir,
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    let tests = yaml(&dir.join("stsbridge-rules.test.yaml"));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let doc = yaml(&rules_file());
    for group in doc["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            assert!(fires.contains(alert), "no test fires {alert}");
            assert!(quiet.contains(alert), "no test keeps {alert} quiet");
            let url = rule["annotations"]["runbook_url"].as_str().unwrap();
            let anchor = url.strip_prefix("README.md#").unwrap();
            assert_eq!(anchor, format!("alert-{}", alert.to_lowercase()));
            assert!(
                readme.contains(&format!("<a id=\"{anchor}\"></a>")),
                "the README's runbook has no entry for {alert}"
            );
        }
    }
    // Every SLI has its rule (the README's table names them).
    let names: BTreeSet<String> = rules().into_iter().map(|(n, _, _)| n).collect();
    for sli in [
        "stsbridge:success_ratio:5m",
        "stsbridge:latency_p95_seconds:5m",
        "stsbridge:issuance_rate:5m",
        "stsbridge:throttle_ratio:5m",
        "stsbridge:invalid_input_ratio:5m",
        "stsbridge:revocation_apply_p99_seconds:5m",
        "stsbridge:replays:5m",
        "stsbridge:audit_completeness_ratio:5m",
        "stsbridge:signing_key_age_seconds:now",
        "stsbridge:error_budget_burn_rate:1h",
    ] {
        assert!(names.contains(sli), "no recording rule {sli}");
        let family = &sli[..=sli.rfind(':').unwrap()];
        assert!(
            readme.contains(&format!("`{family}")),
            "the README does not name {sli}"
        );
    }
}

#[test]
fn the_dashboards_are_what_their_generator_writes() {
    let out = tempfile::tempdir().unwrap();
    let generator = monitoring().join("grafana/generate.py");
    run(
        python().to_str().unwrap(),
        &[generator.to_str().unwrap(), out.path().to_str().unwrap()],
        &repo(),
    );
    for name in ["executive", "on-call", "debug"] {
        let file = format!("{name}.json");
        let committed = std::fs::read_to_string(monitoring().join("grafana").join(&file)).unwrap();
        let generated = std::fs::read_to_string(out.path().join(&file)).unwrap();
        assert!(
            committed == generated,
            "examples/monitoring/grafana/{file} differs from what generate.py writes: rerun it"
        );
        let dashboard: Value = serde_json::from_str(&committed).unwrap();
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            variables
                .iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{file}: no Prometheus data source variable"
        );
        for panel in dashboard["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{file}");
        }
    }
}

/// Every panel query of the dashboards, with Grafana's interval variable as a real range.
fn panel_queries() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for name in ["executive", "on-call", "debug"] {
        let text =
            std::fs::read_to_string(monitoring().join(format!("grafana/{name}.json"))).unwrap();
        let dashboard: Value = serde_json::from_str(&text).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "1m");
                all.push((
                    format!("{name}: {}", panel["title"].as_str().unwrap()),
                    expr,
                ));
            }
        }
    }
    all
}

/// A Prometheus server on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(scrape: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: stsbridge\n    static_configs: [{{ targets: ['{scrape}'] }}]\n",
            rules_file().display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start prometheus (tests/run.sh installs Debian's package)");
        let prometheus = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{}/-/ready", prometheus.base)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/query`: Ok(result) or Err(Prometheus's error).
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body = json_of(
            reqwest::Client::new()
                .get(format!("{}/api/v1/query", self.base))
                .query(&[("query", expr)]),
        )
        .await;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn wait_for(&self, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.query(expr).await.is_ok_and(|r| !r.is_empty()) {
                return;
            }
            assert!(Instant::now() < deadline, "no data for {expr} within 30 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Metrics no traffic of this test produces (or only on failure): queries over them may be empty.
const QUIET: [&str; 11] = [
    "ALERTS",
    "stsbridge_circuit_open",
    "stsbridge_shared_state",
    "stsbridge_revocation_apply",
    "stsbridge:revocation_apply",
    "stsbridge_partner_limited",
    "stsbridge_shadow_decisions",
    "outcome=\"error\"",
    "stsbridge_upstream_duration",
    "status=~\"5..\"}[",
    "stsbridge_introspections",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_rule_and_panel_against_a_running_stsbridge() {
    let stack = Stack::start(Setup {
        sts: Some(&moto().endpoint),
        extra: "limits: { per_subject: \"1/m\", burst: 7 }",
        ..Setup::default()
    })
    .await;
    let scrape = stack.bridge.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&scrape).await;
    prometheus.wait_for("up{job=\"stsbridge\"} == 1").await;

    // Allows (an AWS credential twice: a miss, then a cache hit; an internal token), a denial,
    // throttles, and a refused token; twice, with a scrape between: a counter's series appears
    // at its first increment, so rate() sees the second round's.
    let main = stack.main_token();
    let mut throttled = 0;
    for round in 0..2 {
        for _ in 0..2 {
            let (status, body, _) = stack.credentials("deploy", &format!("Bearer {main}")).await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, body) = stack.exchange(&main, "api", &[]).await;
        assert_eq!(status, 200, "{body}");
        let mallory = stack.idp.token("svc:mallory", serde_json::json!({}));
        assert_eq!(stack.exchange(&mallory, "api", &[]).await.0, 403);
        for _ in 0..8 {
            let flood = stack.idp.token("svc:flood", serde_json::json!({}));
            if stack.exchange(&flood, "api", &[]).await.0 == 429 {
                throttled += 1;
            }
        }
        let mut forged = stack.idp.token("svc:x", serde_json::json!({}));
        forged.push_str("AAAA");
        assert_eq!(stack.exchange(&forged, "api", &[]).await.0, 401);
        if round == 0 {
            prometheus
                .wait_for("sum(stsbridge_refusals_total{status=\"429\"}) >= 1")
                .await;
            prometheus
                .wait_for("sum(stsbridge_refusals_total{status=\"401\"}) >= 1")
                .await;
        }
    }
    assert!(throttled >= 8, "{throttled} throttled");

    // Scraped, and the rules evaluated on it.
    for expr in [
        "stsbridge:throttle_ratio:5m > 0",
        "stsbridge:invalid_input_ratio:5m > 0",
        "sum(rate(stsbridge_cache_events_total{event=\"hit\"}[1m])) > 0",
    ] {
        prometheus.wait_for(expr).await;
    }

    let mut problems = Vec::new();
    let mut with_data = 0;
    let mut queries: Vec<(String, String)> = rules()
        .into_iter()
        .map(|(name, alert, expr)| {
            let what = if alert { "alert" } else { "rule" };
            (format!("{what} {name}"), expr)
        })
        .collect();
    queries.extend(panel_queries());
    for (what, expr) in &queries {
        match prometheus.query(expr).await {
            Err(e) => problems.push(format!("{what}: does not evaluate: {e}\n  {expr}")),
            Ok(result) => {
                // An alert's condition is empty while it does not fire; an expression over a
                // quiet metric may be empty, unless it falls back to `or vector(0)`.
                let may_be_empty = what.starts_with("alert ")
                    || (QUIET.iter().any(|q| expr.contains(q)) && !expr.contains("or vector(0)"));
                if result.is_empty() && !may_be_empty {
                    problems.push(format!("{what}: no data after the traffic\n  {expr}"));
                }
                with_data += usize::from(!result.is_empty());
            }
        }
    }
    // The recorded SLIs themselves, as Prometheus stored them.
    for (name, alert, _) in rules() {
        if !alert && !QUIET.iter().any(|q| name.contains(q)) {
            match prometheus.query(&name).await {
                Ok(r) if !r.is_empty() => {}
                other => problems.push(format!("recorded {name}: {other:?}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let build =
        json_of(reqwest::Client::new().get(format!("{}/api/v1/status/buildinfo", prometheus.base)))
            .await;
    eprintln!(
        "{} expressions evaluated by Prometheus {}, {with_data} with data",
        queries.len(),
        build["data"]["version"]
    );
    // What the traffic was, as Prometheus sees it.
    let throttle = prometheus
        .query("stsbridge:throttle_ratio:5m")
        .await
        .unwrap();
    let value: f64 = throttle[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(value > 0.0 && value < 1.0, "{value}");
}
