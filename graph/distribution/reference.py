"""Docker's image reference grammar and defaults: `[DOMAIN[:PORT]/]PATH[:TAG][@sha256:DIGEST]`.

`busybox` is `docker.io/library/busybox:latest`; the first component is a registry domain only when it
has a `.` or a `:` or is `localhost`; Docker Hub's API host is registry-1.docker.io. Names are kept in
the tag store in their familiar form (`busybox`, `localhost:5000/app`), as the docker CLI shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydock.graph.digest import validate_digest
from pydock.utils.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
HUB_API_HOST = "registry-1.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                        r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised reference; `tag` is None only when a digest pins it."""

    domain: str
    path: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    @property
    def name(self) -> str:
        """The fully qualified repository: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar(self) -> str:
        """The repository as users type it and the tag store keeps it: `busybox`, `localhost:5000/app`."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path[len(OFFICIAL_PREFIX):] if self.path.startswith(OFFICIAL_PREFIX) else self.path
        return self.name

    @property
    def api_host(self) -> str:
        """Where the registry's HTTP API answers for this domain."""
        return HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def ref(self) -> str:
        """The tag or digest the registry's manifest endpoint is asked for (digest first)."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, validate_tag(tag), None)

    def __str__(self) -> str:
        out = self.familiar
        if self.tag and not self.digest:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidArgument(f"invalid tag {tag!r}: only [A-Za-z0-9_.-] are allowed, 1 to 128 characters, "
                              "not starting with . or -")
    return tag


def split_domain(name: str) -> tuple[str, str]:
    """(domain, path) with Docker's defaults: no domain means docker.io, official images under library/."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse `text` with Docker's grammar and defaults; InvalidArgument naming what is wrong."""
    if not text:
        raise InvalidArgument("invalid reference format: empty image name")
    rest, at, digest = text.partition("@")
    if at:
        validate_digest(digest)
    tag: str | None = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], validate_tag(rest[colon + 1:])
    domain, path = split_domain(rest)
    if not _DOMAIN_RE.match(domain):
        raise InvalidArgument(f"invalid reference format: bad registry domain {domain!r} in {text!r}")
    if not _PATH_RE.match(path):
        if path != path.lower():
            raise InvalidArgument(f"invalid reference format: repository name must be lowercase: {text!r}")
        raise InvalidArgument(f"invalid reference format: {text!r}")
    if len(f"{domain}/{path}") > MAX_NAME:
        raise InvalidArgument(f"invalid reference format: repository name longer than {MAX_NAME} characters")
    if tag is None and not at and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest or None)


def familiar(name: str) -> str:
    """The familiar form of a repository name (`docker.io/library/x` -> `x`)."""
    domain, path = split_domain(name)
    return Reference(domain, path).familiar
