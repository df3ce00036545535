"""Makes RFC 9449 DPoP proofs with jwcrypto (an independent implementation), for the e2e tests.

Reads one JSON object on stdin: {"htm", "htu", "iat_offset"?, "jti"?, "ath_token"?, "ath"?,
"alg"? (ES256 | RS256 | EdDSA | none | HS256), "private_jwk"?, "signer"? ("other": sign with
another key than the one in jwk), "typ"?, "key"? (a JWK to reuse)} and prints
{"proof", "jkt", "key"}: the compact proof, the RFC 7638 thumbprint of its key, and the key (to
reuse for the next proof).
"""

import base64
import hashlib
import json
import sys
import time
import uuid

from jwcrypto import jwk, jws


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    spec = json.load(sys.stdin)
    alg = spec.get("alg", "ES256")
    if "key" in spec:
        key = jwk.JWK(**spec["key"])
    elif alg == "RS256":
        key = jwk.JWK.generate(kty="RSA", size=2048)
    elif alg == "EdDSA":
        key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    else:
        key = jwk.JWK.generate(kty="EC", crv="P-256")
    public = json.loads(key.export_public())
    header = {"typ": spec.get("typ", "dpop+jwt"), "alg": alg, "jwk": public}
    if spec.get("private_jwk"):
        header["jwk"] = json.loads(key.export_private())
    claims = {
        "jti": spec.get("jti", str(uuid.uuid4())),
        "htm": spec["htm"],
        "htu": spec["htu"],
        "iat": int(time.time()) + int(spec.get("iat_offset", 0)),
    }
    if "ath_token" in spec:
        claims["ath"] = b64(hashlib.sha256(spec["ath_token"].encode()).digest())
    if "ath" in spec:
        claims["ath"] = spec["ath"]
    payload = json.dumps(claims).encode()
    if alg == "none":
        proof = ".".join([b64(json.dumps(header).encode()), b64(payload), ""])
    elif alg == "HS256":
        secret = jwk.JWK.generate(kty="oct", size=256)
        token = jws.JWS(payload)
        token.add_signature(secret, alg="HS256", protected=json.dumps(header))
        proof = token.serialize(compact=True)
    else:
        signer = key
        if spec.get("signer") == "other":
            signer = jwk.JWK.generate(kty="EC", crv="P-256")
        token = jws.JWS(payload)
        token.add_signature(signer, alg=alg, protected=json.dumps(header))
        proof = token.serialize(compact=True)
    json.dump(
        {
            "proof": proof,
            "jkt": key.thumbprint(),
            "key": json.loads(key.export_private()),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
