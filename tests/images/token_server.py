"""A Docker token service for the Bearer-auth tests: checks basic auth (user:password from argv) and
answers `GET /token?service=&scope=` with an RS256 JWT signed by `openssl`, which the real
docker-registry verifies against the certificate it is given (`kid` = libtrust key id).

    python3 token_server.py PORT KEY.pem PUBKEY.der USER PASSWORD ISSUER
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import subprocess
import sys
import time
import urllib.parse


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(pub_der: bytes) -> str:
    """libtrust's key id: base32 of sha256(DER public key)[:30], in groups of four joined by ':'."""
    s = base64.b32encode(hashlib.sha256(pub_der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def main() -> None:
    port, key, pub, user, password, issuer = sys.argv[1:7]
    kid = key_id(open(pub, "rb").read())
    want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            anonymous = self.headers.get("Authorization") is None
            if not anonymous and self.headers.get("Authorization") != want:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and not anonymous:
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "kid": kid}
            claims = {"iss": issuer, "sub": "" if anonymous else user, "aud": query.get("service", [""])[0],
                      "exp": now + 300, "nbf": now - 10, "iat": now, "jti": str(now), "access": access}
            signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
            sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(),
                                 capture_output=True, check=True).stdout
            body = json.dumps({"token": f"{signing}.{b64(sig)}", "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    http.server.HTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
