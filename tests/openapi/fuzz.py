"""The HTTP API against its own OpenAPI document.

Run by tests/e2e/openapi.rs against a running stsbridge (STSBRIDGE_URL) whose mappings allow the
subject of STSBRIDGE_TOKEN every target of the suite and the built-in stsbridge:revoke and
stsbridge:introspect:

1. Real answers of every kind (an AWS credential from moto in both shapes, a minted JWT, an
   introspection, a revocation made, listed and lifted, the issuer's documents, health, and the
   refusals) must each match what the document says of that operation and status.
2. schemathesis then generates requests from the document, first with that token (so requests get
   past authentication into the handlers), then without (its own generated credentials), and checks
   every answer: a documented status, content type, headers and body, and never a 5xx.

Exits non-zero, naming the failures, when anything does not conform.
"""

import os
import subprocess
import sys
from pathlib import Path

import requests
import schemathesis

BASE = os.environ["STSBRIDGE_URL"]
TOKEN = os.environ["STSBRIDGE_TOKEN"]
SEED = os.environ.get("STSBRIDGE_FUZZ_SEED", "20261203")
EXAMPLES = os.environ.get("STSBRIDGE_FUZZ_EXAMPLES", "100")
JWT = "urn:ietf:params:oauth:token-type:jwt"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"

schema = schemathesis.openapi.from_url(f"{BASE}/openapi.json")
DOCUMENT = requests.get(f"{BASE}/openapi.json").json()
auth = {"Authorization": f"Bearer {TOKEN}"}
checked = []


def conform(method, path, response, status):
    """The answer has `status` and matches the document's description of it."""
    if response.status_code != status:
        sys.exit(
            f"{method} {path}: expected {status}, got {response.status_code}: {response.text[:500]}"
        )
    documented = DOCUMENT["paths"][path][method.lower()]["responses"]
    if str(status) not in documented:
        sys.exit(f"{method} {path} answered {status}, which the document does not list")
    media = response.headers.get("content-type", "").split(";")[0].strip()
    listed = documented[str(status)].get("content", {})
    if media not in listed:
        sys.exit(
            f"{method} {path} {status} answered {media or 'no content type'}, the document lists "
            f"{', '.join(listed) or 'no body'}: {response.text[:200]}"
        )
    try:
        schema[path][method].validate_response(response)
    except Exception as e:  # schemathesis raises a group of failures; name them all
        sys.exit(f"{method} {path} {status} does not match the document: {e}")
    checked.append(f"{method} {path} {status}")
    return response


def credentials():
    path = "/v1/credentials/{target}"
    r = conform("GET", path, requests.get(f"{BASE}/v1/credentials/deploy", headers=auth), 200)
    assert r.json()["AccessKeyId"], r.text
    conform(
        "GET",
        path,
        requests.get(f"{BASE}/v1/credentials/deploy?format=credential_process", headers=auth),
        200,
    )
    r = conform("POST", path, requests.post(f"{BASE}/v1/credentials/api", headers=auth), 200)
    assert r.json()["issued_token_type"] == JWT, r.text
    conform("GET", path, requests.get(f"{BASE}/v1/credentials/deploy"), 401)
    conform("GET", path, requests.get(f"{BASE}/v1/credentials/nope", headers=auth), 404)
    conform(
        "GET", path, requests.get(f"{BASE}/v1/credentials/deploy?format=xml", headers=auth), 400
    )
    conform(
        "GET",
        path,
        requests.get(f"{BASE}/v1/credentials/deploy", headers={"Authorization": "Bearer x.y.z"}),
        401,
    )
    # A path that is not UTF-8 once percent-decoded: a JSON refusal, like every other.
    conform("GET", path, requests.get(f"{BASE}/v1/credentials/%FF", headers=auth), 400)


def token_exchange():
    form = {
        "grant_type": GRANT,
        "subject_token": TOKEN,
        "subject_token_type": JWT,
        "audience": "api",
        "scope": "billing:read",
    }
    r = conform("POST", "/oauth2/token", requests.post(f"{BASE}/oauth2/token", data=form), 200)
    minted = r.json()["access_token"]
    conform(
        "POST",
        "/oauth2/token",
        requests.post(f"{BASE}/oauth2/token", data={**form, "audience": "deploy"}),
        400,
    )
    conform(
        "POST",
        "/oauth2/token",
        requests.post(f"{BASE}/oauth2/token", data={**form, "audience": "nope"}),
        404,
    )
    conform(
        "POST",
        "/oauth2/token",
        requests.post(f"{BASE}/oauth2/token", data={**form, "scope": "x" * (65 * 1024)}),
        413,
    )
    return minted


def operators(minted):
    path = "/oauth2/introspect"
    r = conform("POST", path, requests.post(f"{BASE}{path}", data={"token": minted}, headers=auth), 200)
    assert r.json()["active"] is True, r.text
    r = conform("POST", path, requests.post(f"{BASE}{path}", data={"token": "x"}, headers=auth), 200)
    assert r.json() == {"active": False}, r.text
    conform("POST", path, requests.post(f"{BASE}{path}", data={"token": "x"}), 401)
    conform("POST", path, requests.post(f"{BASE}{path}", data={}, headers=auth), 400)

    new = {"kind": "subject", "issuer": "ci", "value": "svc:compromised", "reason": "test"}
    r = conform(
        "POST", "/v1/revocations", requests.post(f"{BASE}/v1/revocations", json=new, headers=auth), 201
    )
    made = r.json()["id"]
    r = conform(
        "POST",
        "/v1/revocations",
        requests.post(
            f"{BASE}/v1/revocations",
            json={"kind": "target", "value": "deploy", "for": "1s", "reason": "test"},
            headers=auth,
        ),
        201,
    )
    assert "aws" in r.json(), r.text
    conform(
        "POST",
        "/v1/revocations",
        requests.post(f"{BASE}/v1/revocations", json={"kind": "nope"}, headers=auth),
        400,
    )
    conform(
        "POST",
        "/v1/revocations",
        requests.post(
            f"{BASE}/v1/revocations", json={**new, "reason": "x" * (65 * 1024)}, headers=auth
        ),
        413,
    )
    r = conform("GET", "/v1/revocations", requests.get(f"{BASE}/v1/revocations", headers=auth), 200)
    assert any(v["id"] == made for v in r.json()["revocations"]), r.text
    one = "/v1/revocations/{id}"
    conform("DELETE", one, requests.delete(f"{BASE}/v1/revocations/{made}", headers=auth), 200)
    conform("DELETE", one, requests.delete(f"{BASE}/v1/revocations/{made}", headers=auth), 404)


def documents():
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json", "/openapi.json"]:
        conform("GET", path, requests.get(f"{BASE}{path}"), 200)
    for path in ["/healthz", "/readyz", "/metrics"]:
        conform("GET", path, requests.get(f"{BASE}{path}"), 200)


def fuzz(name, checks, extra):
    """One schemathesis run; its failures are this script's."""
    report = Path(os.environ.get("STSBRIDGE_FUZZ_REPORT", ".")) / f"schemathesis-{name}"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{BASE}/openapi.json",
        "--checks",
        ",".join(checks),
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report),
        *extra,
    ]
    print(f"\n== schemathesis, {name}", flush=True)
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        sys.exit(f"schemathesis ({name}) found answers the document does not describe (above)")


# Every check that applies to an API whose every operation needs a token from a trusted issuer:
# not positive_data_acceptance (a request valid by the schema is still refused without a real
# token), and not the stateful ones (the document has no links).
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
]

credentials()
minted = token_exchange()
operators(minted)
documents()
print(f"{len(checked)} real answers match the document:", *checked, sep="\n  ")
# Authenticated first: the unauthenticated run's invalid tokens fill this address's budget of
# failed validations, after which every exchange is refused 429 (documented, but it would keep
# the authenticated requests out of the handlers).
# With the token set, every request carries it: ignored_auth (which needs requests without
# valid credentials) belongs to the second run.
fuzz(
    "authenticated",
    [c for c in CHECKS if c != "ignored_auth"],
    ["-H", f"Authorization: Bearer {TOKEN}", "--generation-with-security-parameters", "false"],
)
fuzz("unauthenticated", CHECKS, [])
