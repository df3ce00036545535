"""Writes stsbridge's three Grafana dashboards (executive, on-call, debug) as JSON beside this file.

The JSON is committed; this is how it is made, so a change is one edit here and a rerun:

    python3 examples/monitoring/grafana/generate.py [OUT_DIR]

The tests check that the committed files are what this writes, and evaluate every panel's query
against a real Prometheus scraping a running stsbridge. Each dashboard has a Prometheus data source
variable (`datasource`) and uses the recording rules of ../prometheus/stsbridge-rules.yaml where
one exists (load those rules, or the stsbridge:* queries return nothing)."""

import json
import pathlib
import sys

SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
HERE = pathlib.Path(__file__).parent


class Layout:
    """Places panels left to right, 24 columns wide."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, width, height):
        if self.x + width > 24:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        pos = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        panel_id = self.next_id
        self.next_id += 1
        return panel_id, pos


def target(expr, legend="", ref="A"):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(layout, kind, title, description, targets, unit=None, width=12, height=8, thresholds=None):
    panel_id, pos = layout.place(width, height)
    defaults = {}
    if unit:
        defaults["unit"] = unit
    if thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in thresholds],
        }
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
    }


def dashboard(uid, title, description, panels):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["stsbridge"],
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "type": "datasource",
                    "name": "datasource",
                    "label": "Prometheus",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


ERRORS_30D = '(sum(increase(stsbridge_refusals_total{status=~"5.."}[30d])) or vector(0))'
TOTAL_30D = "sum(increase(stsbridge_exchanges_total[30d]))"
RATE = "$__rate_interval"


def executive():
    lay = Layout()
    return dashboard(
        "stsbridge-executive",
        "stsbridge: executive",
        "Is stsbridge meeting its SLO, and how much is it used?",
        [
            panel(lay, "stat", "Exchanges without a server error, 30 days (SLO 99.9%)",
                  "M1 over the SLO's window: denials of bad or unauthorized tokens count as correct answers.",
                  [(f"1 - {ERRORS_30D} / {TOTAL_30D}", "")], unit="percentunit", width=8,
                  thresholds=[(None, "red"), (0.999, "green")]),
            panel(lay, "stat", "Error budget left, 30 days",
                  "The share of the month's 0.1% budget of server errors not yet spent.",
                  [(f"1 - ({ERRORS_30D} / {TOTAL_30D}) / 0.001", "")], unit="percentunit", width=8,
                  thresholds=[(None, "red"), (0.25, "orange"), (0.5, "green")]),
            panel(lay, "stat", "Credentials issued, 30 days", "M3 summed over the month.",
                  [('sum(increase(stsbridge_exchanges_total{outcome="allow"}[30d]))', "")], unit="short", width=8),
            panel(lay, "timeseries", "Issuance rate by cloud", "M3: credentials and tokens issued per second.",
                  [("stsbridge:issuance_rate:5m", "{{provider}}")], unit="reqps"),
            panel(lay, "timeseries", "Answer time, p95", "M2: time to answer an exchange.",
                  [("stsbridge:latency_p95_seconds:5m", "p95")], unit="s"),
            panel(lay, "timeseries", "Exchanges by outcome", "Allowed, denied (a correct refusal) and failed.",
                  [(f"sum by (outcome) (rate(stsbridge_exchanges_total[{RATE}]))", "{{outcome}}")], unit="reqps"),
            panel(lay, "timeseries", "Served from the cache",
                  "The share of credential requests answered without calling a cloud.",
                  [(f'sum(rate(stsbridge_cache_events_total{{event=~"hit|stale|coalesced"}}[{RATE}])) / sum(rate(stsbridge_cache_events_total[{RATE}]))', "cache")],
                  unit="percentunit"),
        ],
    )


def on_call():
    lay = Layout()
    return dashboard(
        "stsbridge-on-call",
        "stsbridge: on-call",
        "What is burning, and where to look first.",
        [
            panel(lay, "timeseries", "Error budget burn rate",
                  "M10: 1 spends the month's budget in exactly 30 days. The page fires at 14.4 (1 h and 5 m) or 6 (6 h and 30 m).",
                  [("stsbridge:error_budget_burn_rate:5m", "5m"), ("stsbridge:error_budget_burn_rate:1h", "1h"),
                   ("stsbridge:error_budget_burn_rate:6h", "6h")], width=12,
                  thresholds=[(None, "green"), (6, "orange"), (14.4, "red")]),
            panel(lay, "table", "Firing alerts", "stsbridge's alerts now firing, with their runbook entries.",
                  [('ALERTS{alertname=~"Stsbridge.*", alertstate="firing"}', "{{alertname}}")], width=12),
            panel(lay, "timeseries", "Server errors by reason",
                  "The 5xx answers: upstream_unavailable, circuit_open, jwks_unavailable, audit_failed...",
                  [(f'sum by (reason, status) (rate(stsbridge_refusals_total{{status=~"5.."}}[{RATE}]))', "{{reason}} ({{status}})")],
                  unit="reqps"),
            panel(lay, "timeseries", "Circuit breakers open", "1 while a cloud's circuit is open: only cached credentials are served.",
                  [("max by (provider) (stsbridge_circuit_open)", "{{provider}}")], width=6),
            panel(lay, "timeseries", "Shared state fallback", "1 while a replica cannot reach Redis.",
                  [("max by (instance) (stsbridge_shared_state_fallback)", "{{instance}}")], width=6),
            panel(lay, "timeseries", "JWKS refresh failures by trust entry",
                  "Failed fetches of an IdP's keys; tokens validate on the last good keys until max_staleness.",
                  [(f'sum by (issuer) (increase(stsbridge_jwks_refresh_total{{outcome="error"}}[{RATE}]))', "{{issuer}}")]),
            panel(lay, "timeseries", "Audit failures and refused reloads",
                  "Audit events not written (callers get 500 with on_failure: closed); config changes refused.",
                  [(f"sum(increase(stsbridge_audit_failures_total[{RATE}]))", "audit failures"),
                   (f'sum(increase(stsbridge_config_reload_total{{outcome="error"}}[{RATE}]))', "reloads refused")]),
            panel(lay, "timeseries", "Throttled and invalid input",
                  "M4: the share refused by a limit (429). M5: the share with a malformed request or token (400, 401).",
                  [("stsbridge:throttle_ratio:5m", "throttled"), ("stsbridge:invalid_input_ratio:5m", "invalid input")],
                  unit="percentunit"),
            panel(lay, "timeseries", "Replicas scraped", "1 per replica Prometheus reaches.",
                  [('up{job=~".*stsbridge.*"}', "{{instance}}")]),
        ],
    )


def debug():
    lay = Layout()
    return dashboard(
        "stsbridge-debug",
        "stsbridge: debug",
        "Every metric stsbridge exports, by its labels.",
        [
            panel(lay, "timeseries", "Refusals by reason and status", "Every error answer, by reason code.",
                  [(f"sum by (reason, status) (rate(stsbridge_refusals_total[{RATE}]))", "{{reason}} ({{status}})")],
                  unit="reqps"),
            panel(lay, "timeseries", "Exchanges by target and outcome", "",
                  [(f"sum by (target, outcome) (rate(stsbridge_exchanges_total[{RATE}]))", "{{target}} {{outcome}}")],
                  unit="reqps"),
            panel(lay, "timeseries", "Answer time, p50 / p95 / p99", "",
                  [(f"histogram_quantile({q}, sum by (le) (rate(stsbridge_exchange_duration_seconds_bucket[{RATE}])))", f"p{int(q * 100)}")
                   for q in (0.5, 0.95, 0.99)], unit="s"),
            panel(lay, "timeseries", "Upstream call time by cloud, p95", "Time of the calls that made a credential.",
                  [(f"histogram_quantile(0.95, sum by (le, provider) (rate(stsbridge_upstream_duration_seconds_bucket[{RATE}])))", "{{provider}}")],
                  unit="s"),
            panel(lay, "timeseries", "Cache events", "hit, miss, coalesced, stale.",
                  [(f"sum by (event) (rate(stsbridge_cache_events_total[{RATE}]))", "{{event}}")], unit="reqps"),
            panel(lay, "timeseries", "Shared state round trips, p99, and errors", "Redis, by operation.",
                  [(f"histogram_quantile(0.99, sum by (le, op) (rate(stsbridge_shared_state_seconds_bucket[{RATE}])))", "p99 {{op}}"),
                   (f"sum by (op) (rate(stsbridge_shared_state_errors_total[{RATE}]))", "errors {{op}}")]),
            panel(lay, "timeseries", "Revocations", "M6: p99 time to apply; active revocations; exchanges they refused.",
                  [("stsbridge:revocation_apply_p99_seconds:5m", "apply p99 (s)"),
                   ("max(stsbridge_revocations_active)", "active"),
                   (f"sum by (kind) (increase(stsbridge_revoked_denials_total[{RATE}]))", "refused ({{kind}})")]),
            panel(lay, "timeseries", "Single use", "M7: tokens presented again; refused because the store was full.",
                  [("stsbridge:replays:5m", "replays/s"),
                   (f"sum(rate(stsbridge_replay_store_full_total[{RATE}]))", "store full/s")]),
            panel(lay, "timeseries", "Limits", "Per-caller limits (429) and partners' own limits.",
                  [(f"sum(rate(stsbridge_rate_limited_total[{RATE}]))", "rate limited"),
                   (f"sum by (issuer, limit) (rate(stsbridge_partner_limited_total[{RATE}]))", "{{issuer}} {{limit}}")],
                  unit="reqps"),
            panel(lay, "timeseries", "Audit completeness", "M8: decisions whose audit event was written.",
                  [("stsbridge:audit_completeness_ratio:5m", "written")], unit="percentunit"),
            panel(lay, "stat", "Signing key age", "M9: the age of the key that signs now.",
                  [("stsbridge:signing_key_age_seconds:now", "")], unit="s", width=6),
            panel(lay, "stat", "Keys published", "The signing key, staged and retiring ones.",
                  [("max(stsbridge_signing_keys_published)", "")], width=6),
            panel(lay, "timeseries", "Audit-mode rules", "Rules in audit mode that matched, and what they would have done.",
                  [(f"sum by (rule, would) (increase(stsbridge_shadow_decisions_total[{RATE}]))", "{{rule}} would {{would}}")]),
            panel(lay, "timeseries", "Introspection and reloads", "",
                  [(f"sum by (active) (rate(stsbridge_introspections_total[{RATE}]))", "introspected active={{active}}"),
                   (f"sum by (outcome) (increase(stsbridge_config_reload_total[{RATE}]))", "reload {{outcome}}")]),
        ],
    )


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for name, build in (("executive", executive), ("on-call", on_call), ("debug", debug)):
        path = out / f"{name}.json"
        path.write_text(json.dumps(build(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
