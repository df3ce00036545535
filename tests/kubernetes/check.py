"""Offline checks of the rendered Kubernetes example (`kubectl kustomize` output, one or more
multi-document YAML files given as arguments):

- every object validates against the Kubernetes OpenAPI schemas in strict mode (unknown fields are
  errors) for the oldest and the newest version the example supports (kubernetes-validate's
  bundled schemas, no network); the Prometheus Operator's ServiceMonitor, a CRD with no bundled
  schema, is checked field by field instead;
- every pod template meets Pod Security "restricted", field by field, plus a read-only root;
- what refers to something resolves: selectors of Services, PodDisruptionBudgets,
  NetworkPolicies, topology spread and ServiceMonitors match the pods or Services they mean; probe
  ports name a container port; the HPA scales an existing Deployment; the grace period covers the
  preStop delay plus stsbridge's 30 s drain.

Prints one line per object checked; exits 1 listing every problem."""

import sys

import kubernetes_validate
import yaml

VERSIONS = ["1.31.0", "1.37.0"]
# stsbridge finishes requests in flight for up to 30 s after SIGTERM.
DRAIN_SECONDS = 30
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
POD_TEMPLATES = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def load(paths):
    objects = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            objects.extend(doc for doc in yaml.safe_load_all(f) if doc)
    return objects


def name(obj):
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')} {meta.get('namespace', '-')}/{meta.get('name')}"


def validate_schema(obj, problems):
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if obj.get("kind") == "ServiceMonitor":
                return
            problems.append(f"{name(obj)}: no Kubernetes {version} schema for this kind")
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            problems.append(f"{name(obj)}: Kubernetes {version} schema: {path}: {e.message}")


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def containers(spec):
    """Every container of a pod spec, init containers (and native sidecars) included."""
    return [("container", c) for c in spec.get("containers", [])] + [
        ("initContainer", c) for c in spec.get("initContainers", [])
    ]


def check_restricted(obj, spec, problems):
    """Pod Security Standards, "restricted" profile (which includes "baseline")."""
    where = name(obj)
    pod_sc = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{where}: {field} must not be set")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"{where}: volume {volume['name']} is {sorted(kinds)}, not a restricted type")
    if pod_sc.get("runAsUser") == 0:
        problems.append(f"{where}: pod runAsUser 0")
    if pod_sc.get("sysctls"):
        problems.append(f"{where}: sysctls set")
    pod_seccomp = pod_sc.get("seccompProfile", {}).get("type")
    for kind, c in containers(spec):
        cw = f"{where} {kind} {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{cw}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
            problems.append(f"{cw}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{cw}: runAsUser 0")
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{cw}: seccompProfile must be RuntimeDefault or Localhost (is {seccomp})")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{cw}: capabilities.drop must include ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{cw}: capabilities.add beyond NET_BIND_SERVICE")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{cw}: procMount")
        if sc.get("seLinuxOptions", {}).get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t"):
            problems.append(f"{cw}: seLinuxOptions.type")
        if sc.get("appArmorProfile", {}).get("type") == "Unconfined":
            problems.append(f"{cw}: AppArmor Unconfined")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{cw}: hostPort")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: readOnlyRootFilesystem must be true")


def check_probes(obj, spec, problems):
    for kind, c in containers(spec):
        ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.get(probe)
            if p is None:
                continue
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if handler in p:
                    if p[handler].get("port") not in ports:
                        problems.append(f"{name(obj)} {c['name']} {probe}: port {p[handler].get('port')} is not a container port")
                    if p[handler].get("host"):
                        problems.append(f"{name(obj)} {c['name']} {probe}: host set (the kubelet would probe another address than the pod's)")
        if c["name"] in ("stsbridge", "stsbridge-agent"):
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{name(obj)} {c['name']}: no {probe}")


def check_grace(obj, spec, problems):
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for _, c in containers(spec):
        sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
        if c["name"] == "stsbridge":
            if sleep is None:
                problems.append(f"{name(obj)}: stsbridge has no preStop delay")
            elif grace < sleep + DRAIN_SECONDS:
                problems.append(f"{name(obj)}: terminationGracePeriodSeconds {grace} < preStop {sleep} + drain {DRAIN_SECONDS}")


def main() -> int:
    objects = load(sys.argv[1:])
    problems = []
    pods = {}  # (namespace, name) -> (labels, spec)
    for obj in objects:
        validate_schema(obj, problems)
        if obj.get("kind") in POD_TEMPLATES:
            template = obj["spec"]["template"]
            spec = template["spec"]
            labels = template["metadata"].get("labels", {})
            if not matches(obj["spec"].get("selector", {}).get("matchLabels"), labels):
                problems.append(f"{name(obj)}: its selector does not match its pod labels")
            for constraint in spec.get("topologySpreadConstraints", []):
                if not matches(constraint.get("labelSelector", {}).get("matchLabels"), labels):
                    problems.append(f"{name(obj)}: a topology spread selector misses its own pods")
            check_restricted(obj, spec, problems)
            check_probes(obj, spec, problems)
            check_grace(obj, spec, problems)
            pods[(obj["metadata"].get("namespace"), obj["metadata"]["name"])] = (labels, spec, obj["kind"])
        print(f"checked {name(obj)}")

    def pods_in(namespace, selector):
        return [key for key, (labels, _, _) in pods.items() if key[0] == namespace and matches(selector, labels)]

    services = {}
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        kind = obj.get("kind")
        if kind == "Service":
            services[(ns, obj["metadata"]["name"])] = obj
            selected = pods_in(ns, obj["spec"].get("selector"))
            if not selected:
                problems.append(f"{name(obj)}: selects no pods")
            for port in obj["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                for key in selected:
                    spec = pods[key][1]
                    names = {p.get("name") for _, c in containers(spec) for p in c.get("ports", [])}
                    numbers = {p["containerPort"] for _, c in containers(spec) for p in c.get("ports", [])}
                    if target not in names | numbers:
                        problems.append(f"{name(obj)}: targetPort {target} is no port of {key[1]}")
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = obj["spec"].get("selector" if kind == "PodDisruptionBudget" else "podSelector", {})
            if not pods_in(ns, selector.get("matchLabels")):
                problems.append(f"{name(obj)}: selects no pods")
        elif kind == "HorizontalPodAutoscaler":
            ref = obj["spec"]["scaleTargetRef"]
            if (ns, ref["name"]) not in pods or pods[(ns, ref["name"])][2] != ref["kind"]:
                problems.append(f"{name(obj)}: scales {ref['kind']} {ref['name']}, which is not here")
    for obj in objects:
        if obj.get("kind") != "ServiceMonitor":
            continue
        ns = obj["metadata"].get("namespace")
        if obj.get("apiVersion") != "monitoring.coreos.com/v1":
            problems.append(f"{name(obj)}: apiVersion must be monitoring.coreos.com/v1")
        selector = obj["spec"].get("selector", {}).get("matchLabels")
        chosen = [s for (sns, _), s in services.items() if sns == ns and matches(selector, s["metadata"].get("labels", {}))]
        if not chosen:
            problems.append(f"{name(obj)}: selects no Service (by the Service's own labels)")
        for endpoint in obj["spec"].get("endpoints", []):
            unknown = set(endpoint) - {"port", "scheme", "path", "interval", "scrapeTimeout", "tlsConfig"}
            if unknown:
                problems.append(f"{name(obj)}: unexpected endpoint fields {sorted(unknown)}")
            for s in chosen:
                if endpoint.get("port") not in {p.get("name") for p in s["spec"]["ports"]}:
                    problems.append(f"{name(obj)}: port {endpoint.get('port')} is no named port of {s['metadata']['name']}")
            if endpoint.get("path") != "/metrics":
                problems.append(f"{name(obj)}: path must be /metrics")
    if problems:
        print("\n".join(["problems:"] + problems), file=sys.stderr)
        return 1
    print(f"{len(objects)} objects valid for Kubernetes {', '.join(VERSIONS)}; pod specs meet restricted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
