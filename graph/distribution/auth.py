"""Registry credentials in Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`, mode 0600), so `docker login` and `pydock login` share them both ways.

Only the `auths` section is read and written (`{"auths": {"HOST": {"auth": base64("user:pass")}}}`);
every other key of the file is kept as it was. Credential helpers (`credsStore`, `credHelpers`) are
not run: a host they cover is treated as having no stored credentials (said at debug level).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydock.graph.distribution.reference import DEFAULT_DOMAIN, HUB_API_HOST, LEGACY_DOMAIN
from pydock.utils.errors import InvalidArgument
from pydock.utils.fileutil import atomic_write, flocked

log = logging.getLogger(__package__)

#: the key Docker stores Docker Hub's credentials under.
HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def server_key(host: str) -> str:
    """The `auths` key of a registry host (Docker Hub's is its legacy v1 URL)."""
    return HUB_KEY if host in (DEFAULT_DOMAIN, LEGACY_DOMAIN, HUB_API_HOST) else host


def _normalise(key: str) -> str:
    """`https://host:port/v2/` and `host:port` name the same registry."""
    if key == HUB_KEY:
        return key
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0]


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as err:
        raise InvalidArgument(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path} is not a JSON object")
    return data


def lookup(host: str, path: Path | None = None) -> Credentials | None:
    """The stored credentials for registry `host`, or None."""
    path = path or config_path()
    data = _read(path)
    want = server_key(host)
    auths = data.get("auths") or {}
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if _normalise(str(key)) != _normalise(want) or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as err:
                raise InvalidArgument(f"{path}: the auth of {key} is not base64 user:password ({err})") from None
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(str(entry["username"]), str(entry.get("password") or ""))
    helpers = data.get("credHelpers") or {}
    if data.get("credsStore") or (isinstance(helpers, dict) and want in helpers):
        log.debug("credentials for %s may be in a credential helper, which pydock does not run", host)
    return None


def store(host: str, creds: Credentials, path: Path | None = None) -> Path:
    """Save credentials for `host` (the file is created 0600; other keys are kept)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with flocked(path.with_name(path.name + ".lock")):
        data = _read(path)
        auths = data.get("auths")
        if not isinstance(auths, dict):
            auths = {}
        key = server_key(host)
        for old in [k for k in auths if _normalise(str(k)) == _normalise(key)]:
            del auths[old]
        auths[key] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
        data["auths"] = auths
        atomic_write(path, (json.dumps(data, indent="\t") + "\n").encode(), 0o600)
    return path


def remove(host: str, path: Path | None = None) -> bool:
    """Forget the credentials for `host`; True if there were any."""
    path = path or config_path()
    if not path.exists():
        return False
    with flocked(path.with_name(path.name + ".lock")):
        data = _read(path)
        auths = data.get("auths")
        if not isinstance(auths, dict):
            return False
        key = server_key(host)
        gone = [k for k in auths if _normalise(str(k)) == _normalise(key)]
        for k in gone:
            del auths[k]
        if gone:
            atomic_write(path, (json.dumps(data, indent="\t") + "\n").encode(), 0o600)
        return bool(gone)
