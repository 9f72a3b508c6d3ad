"""A real identity provider's public face for tests: signing keys and the server publishing them.

``SigningKey`` is a freshly generated RSA or EC key pair with a kid; it signs tokens the way a
provider does and gives its public half as a JWK. ``JwksServer`` is a threaded HTTP server on a
free port serving, for an issuer shaped like Keycloak's (``http://127.0.0.1:<port>/realms/test``):

    <issuer>/.well-known/openid-configuration   the discovery document naming the jwks_uri
    <issuer>/keys                               the JWKS of the keys currently published

Every request is counted by path, so tests can prove how often the gateway fetched;
``forced_answer`` makes every path give one (bad) answer, a provider failing. The server
answers HTTP/1.0 (one connection per request), so a stopped server is really unreachable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

REALM_PATH = "/realms/test"
DISCOVERY_PATH = REALM_PATH + "/.well-known/openid-configuration"
JWKS_PATH = REALM_PATH + "/keys"


@dataclass
class SigningKey:
    """A provider's key pair: signs tokens with its kid, publishes its public half."""

    kid: str
    algorithm: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, algorithm: str | None = None) -> str:
        """A token as the provider would issue it (another kid or algorithm on request)."""
        headers = {"kid": kid or self.kid}
        return jwt.encode(claims, self.private_key, algorithm=algorithm or self.algorithm, headers=headers)


def rsa_key(kid: str | None = None) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or f"rsa-{uuid.uuid4().hex[:8]}", "RS256", key)


def ec_key(kid: str | None = None) -> SigningKey:
    return SigningKey(kid or f"ec-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1()))


def claims_for(issuer: str, audience: str | list[str], *, subject: str = "alice", **extra: Any) -> dict[str, Any]:
    """A valid access token's claims: issued now, for five minutes."""
    now = int(time.time())
    return {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + 300, **extra}


def unsigned_token(claims: dict[str, Any], kid: str) -> str:
    """``alg: none``: a token with no signature at all."""
    return _compact({"alg": "none", "typ": "JWT", "kid": kid}, claims, b"")


def hs256_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 with ``secret`` as the MAC key; PyJWT refuses to make one from a PEM, an attacker does not."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
    return _compact(header, claims, hmac.new(secret, signing_input, hashlib.sha256).digest())


def with_payload(token: str, claims: dict[str, Any]) -> str:
    """The token with its payload replaced and its original signature kept (tampering)."""
    header, _, signature = token.split(".")
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class JwksHandler(BaseHTTPRequestHandler):
    server: JwksServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return

    def do_GET(self) -> None:
        self.server.record(self.path)
        if self.server.forced_answer is not None:
            self._send(*self.server.forced_answer)
        elif self.path == JWKS_PATH:
            self._send(200, json.dumps(self.server.jwks_document()).encode())
        elif self.path == DISCOVERY_PATH:
            self._send(200, json.dumps(self.server.discovery_document()).encode())
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class JwksServer(ThreadingHTTPServer):
    """The provider's endpoints on a free port; ``publish`` changes the keys it serves."""

    daemon_threads = True

    def __init__(self, keys: list[SigningKey]) -> None:
        super().__init__(("127.0.0.1", 0), JwksHandler)
        self._lock = threading.Lock()
        self._keys = list(keys)
        self.requests: Counter[str] = Counter()
        self.forced_answer: tuple[int, bytes] | None = None  # (status, body) for every path
        self.discovered_issuer: str | None = None  # what discovery claims; None: the real issuer
        # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="jwks-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.base_url + REALM_PATH

    @property
    def jwks_url(self) -> str:
        return self.base_url + JWKS_PATH

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def publish(self, keys: list[SigningKey]) -> None:
        with self._lock:
            self._keys = list(keys)

    def record(self, path: str) -> None:
        with self._lock:
            self.requests[path] += 1

    def fetches(self, path: str = JWKS_PATH) -> int:
        with self._lock:
            return self.requests[path]

    def jwks_document(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.public_jwk() for key in self._keys]}

    def discovery_document(self) -> dict[str, Any]:
        return {"issuer": self.discovered_issuer or self.issuer, "jwks_uri": self.jwks_url}
