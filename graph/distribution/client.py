"""The registry HTTP API (OCI Distribution / Docker Registry v2) over the standard library's http.client.

One `Registry` per host: https, or plain http for loopback hosts and those named with
`--insecure-registry` (as Docker does: tried after https fails for them). A 401's WWW-Authenticate
challenge is answered once per scope: `Bearer realm=...,service=...` fetches a token from the realm
(with the stored credentials, if any), `Basic` sends them directly. Each thread keeps its own
keep-alive connection; every socket operation has a bounded timeout.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from pydock.graph.distribution.auth import Credentials
from pydock.utils.errors import InvalidArgument, NotFound, PydockError

log = logging.getLogger(__package__)

#: seconds any one connect, send or receive may take before the registry counts as unreachable.
TIMEOUT = 30.0
_MAX_REDIRECTS = 5
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^\s,]+)')


class RegistryError(PydockError):
    """The registry refused or failed a request (the message says which and why)."""


class Unauthorized(RegistryError):
    """401/403: no or wrong credentials, or no access to the repository."""


class Unreachable(RegistryError):
    """The registry could not be connected to (or stopped answering)."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _error_message(body: bytes) -> str:
    """`code: message` from a registry's `{"errors": [...]}` body, else the body's start."""
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(f"{str(e.get('code', '')).lower().replace('_', ' ')}: {e.get('message', '')}".strip(": ")
                         for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace").strip()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE_RE.finditer(rest):
        key = m.group(1) or m.group(3)
        params[key.lower()] = m.group(2) if m.group(1) else m.group(4)
    return scheme.lower(), params


class Registry:
    """A client for one registry host (`host[:port]`)."""

    def __init__(self, host: str, credentials: Credentials | None = None, insecure: bool = False,
                 timeout: float = TIMEOUT) -> None:
        self.host = host
        self.credentials = credentials
        self.may_use_http = insecure or is_loopback(host)
        self.timeout = timeout
        self._scheme: str | None = None
        self._local = threading.local()
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._lock = threading.Lock()

    # ---- connections ---------------------------------------------------------------------

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, timeout=self.timeout, context=ssl.create_default_context())
        return http.client.HTTPConnection(host, timeout=self.timeout)

    def _conn(self, scheme: str, host: str) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get((scheme, host))
        if conn is None:
            conn = conns[(scheme, host)] = self._connect(scheme, host)
        return conn

    def _drop(self, scheme: str, host: str) -> None:
        conn = getattr(self._local, "conns", {}).pop((scheme, host), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in getattr(self._local, "conns", {}).values():
            conn.close()
        self._local.conns = {}

    def scheme(self) -> str:
        """https; for a host that may use http (loopback, --insecure-registry) whichever it speaks,
        probed once per client with a plain-http `GET /v2/` (a TLS server refuses it)."""
        if self._scheme is None:
            if not self.may_use_http:
                self._scheme = "https"
            else:
                try:
                    resp = self._send("http", self.host, "GET", "/v2/", {}, None)
                    speaks_http = resp.status in (200, 401) or bool(resp.getheader("Docker-Distribution-Api-Version"))
                except (http.client.HTTPException, ConnectionResetError) as err:
                    log.debug("registry %s: plain http failed (%s), using https", self.host, err)
                    speaks_http = False
                self._scheme = "http" if speaks_http else "https"
                if not speaks_http:
                    self._drop("http", self.host)
        return self._scheme

    def _send(self, scheme: str, host: str, method: str, path: str, headers: dict[str, str],
              body: bytes | BinaryIO | None, stream: bool = False) -> http.client.HTTPResponse:
        for attempt in (0, 1):
            conn = self._conn(scheme, host)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                if not stream:
                    resp.body = resp.read()  # type: ignore[attr-defined]
                return resp
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(scheme, host)
                if attempt or (body is not None and not isinstance(body, bytes)):
                    raise
                log.debug("registry %s: kept-alive connection closed, reconnecting", host)
            except BaseException:
                self._drop(scheme, host)
                raise
        raise AssertionError("unreachable")

    # ---- requests ------------------------------------------------------------------------

    def request(self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None,
                body: bytes | BinaryIO | None = None, stream: bool = False, ok: tuple[int, ...] = (200,),
                what: str = "") -> http.client.HTTPResponse:
        """One API request with auth; a status outside `ok` becomes the matching error. With `stream`
        the caller reads (and closes) the body."""
        what = what or f"{method} {path}"
        try:
            scheme = self.scheme()
            resp = self._authed(scheme, method, path, scope, dict(headers or {}), body, stream)
            hops = 0
            while resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and hops < _MAX_REDIRECTS:
                hops += 1
                location = resp.getheader("Location") or ""
                if stream:
                    resp.read()
                url = urllib.parse.urlsplit(urllib.parse.urljoin(f"{scheme}://{self.host}{path}", location))
                target = url.path + (f"?{url.query}" if url.query else "")
                if url.netloc == self.host:
                    resp = self._authed(url.scheme, method, target, scope, dict(headers or {}), None, stream)
                else:  # another host (a CDN): no credentials go there
                    resp = self._send(url.scheme, url.netloc, method, target, dict(headers or {}), None, stream)
        except socket.timeout:
            raise Unreachable(f"registry {self.host}: no answer within {self.timeout:g}s ({what})") from None
        except ssl.SSLError as err:
            if getattr(err, "reason", "") == "WRONG_VERSION_NUMBER" and not self.may_use_http:
                raise Unreachable(f"registry {self.host} answered https with plain http: to use it anyway, "
                                  f"name it with --insecure-registry {self.host}") from None
            raise Unreachable(f"registry {self.host} is unreachable: {err}") from None
        except (OSError, http.client.HTTPException) as err:
            raise Unreachable(f"registry {self.host} is unreachable: {err}") from None
        if resp.status not in ok:
            body_bytes = resp.read() if stream else resp.body  # type: ignore[attr-defined]
            if stream:
                resp.close()
            self._raise(resp.status, body_bytes, what)
        return resp

    def _authed(self, scheme: str, method: str, path: str, scope: str, headers: dict[str, str],
                body: bytes | BinaryIO | None, stream: bool) -> http.client.HTTPResponse:
        auth = self._auth_header(scope)
        if auth:
            headers["Authorization"] = auth
        pos = body.tell() if body is not None and not isinstance(body, bytes) else None
        resp = self._send(scheme, self.host, method, path, headers, body, stream)
        if resp.status != 401:
            return resp
        challenge = resp.getheader("WWW-Authenticate") or ""
        if stream:
            resp.read()
        if not self._answer(challenge, scope):
            return resp
        headers["Authorization"] = self._auth_header(scope) or ""
        if pos is not None:
            body.seek(pos)  # type: ignore[union-attr]
        return self._send(scheme, self.host, method, path, headers, body, stream)

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            token = self._tokens.get(scope)
            if token:
                return f"Bearer {token}"
            if self._basic and self.credentials:
                return "Basic " + base64.b64encode(
                    f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
        return None

    def _answer(self, challenge: str, scope: str) -> bool:
        """Act on a 401's challenge; False when there is nothing more to try."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self.credentials or self._basic:
                return False
            self._basic = True
            return True
        if scheme != "bearer" or not params.get("realm"):
            return False
        if self._tokens.get(scope):
            return False  # the token we have was refused
        self._tokens[scope] = self._fetch_token(params, scope)
        return True

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme not in ("https", "http") or (realm.scheme == "http" and not self.may_use_http
                                                      and realm.netloc != self.host):
            raise Unauthorized(f"registry {self.host}: refusing token realm {params['realm']}")
        query = {"service": params.get("service", "")}
        if scope:
            query["scope"] = scope
        path = realm.path + "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
        if realm.query:
            path += "&" + realm.query
        headers = {}
        if self.credentials:
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
        resp = self._send(realm.scheme, realm.netloc, "GET", path, headers, None)
        if resp.status != 200:
            self._raise(resp.status, resp.body, "token request")  # type: ignore[attr-defined]
        try:
            data = json.loads(resp.body)  # type: ignore[attr-defined]
            return str(data.get("token") or data["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"registry {self.host}: the token service answered without a token") from None

    def _raise(self, status: int, body: bytes, what: str) -> None:
        detail = _error_message(body) or http.client.responses.get(status, "")
        if status == 401:
            raise Unauthorized(f"{what}: unauthorized: authentication required ({detail})")
        if status == 403:
            raise Unauthorized(f"{what}: denied: access forbidden ({detail})")
        if status == 404:
            raise NotFound(f"{what}: not found ({detail})")
        if status in (400, 405, 413, 416):
            raise InvalidArgument(f"{what}: registry refused the request ({status} {detail})")
        raise RegistryError(f"{what}: registry {self.host} answered {status} {detail}")

    # ---- the API ---------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: check the registry answers and the credentials are accepted."""
        self.request("GET", "/v2/", scope="", what=f"login to {self.host}")

    @contextmanager
    def get_blob(self, name: str, digest: str) -> Iterator[http.client.HTTPResponse]:
        resp = self.request("GET", f"/v2/{name}/blobs/{digest}", scope=pull_scope(name), stream=True,
                            what=f"blob {digest[:19]} of {name}")
        try:
            yield resp
        finally:
            resp.close()

    def blob_exists(self, name: str, digest: str, scope: str | None = None) -> bool:
        resp = self.request("HEAD", f"/v2/{name}/blobs/{digest}", scope=scope or pull_scope(name), ok=(200, 404),
                            what=f"blob {digest[:19]} of {name}")
        return resp.status == 200


def pull_scope(name: str) -> str:
    return f"repository:{name}:pull"


def push_scope(name: str) -> str:
    return f"repository:{name}:pull,push"
