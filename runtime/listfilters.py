"""`ps --filter` / `GET /containers/json?filters=` and `images --filter`: which containers and images a listing
shows, with Docker's filter keys and messages. Every key Docker knows is either carried out here or refused; none is ignored.

Carried out: id, name (a regexp, matched in linear time), label (`key` or `key=value`), status, exited,
ancestor (the image or any image built on it), before and since (another container's creation), volume
(a destination, a source or a named volume), network, publish and expose (`port[/proto]` or a range), and
is-task. `health` is refused: pydock records no health (HEALTHCHECK is kept, not run).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from pydock.runtime.container import Container
from pydock.utils import saferegex
from pydock.utils.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

#: Docker's container states (State.Status), the values `status=` takes
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$")


def has_label(labels: Mapping[str, str] | None, spec: str) -> bool:
    """Whether `labels` has `spec`: a key (any value) or `key=value`."""
    key, sep, value = spec.partition("=")
    labels = labels or {}
    return key in labels and (not sep or labels[key] == value)


@dataclass(frozen=True)
class PortRange:
    """`80`, `8000-8080`, with an optional protocol (any when not given)."""

    first: int
    last: int
    proto: str | None

    @classmethod
    def parse(cls, key: str, text: str) -> PortRange:
        m = _PORT.match(text)
        if not m:
            raise InvalidArgument(f"invalid filter '{key}={text}'")
        first = int(m.group(1))
        return cls(first, int(m.group(2) or first), m.group(3))

    def covers(self, port: str) -> bool:
        number, _, proto = port.partition("/")
        return number.isdigit() and self.first <= int(number) <= self.last and \
            (self.proto is None or self.proto == (proto or "tcp"))


@dataclass(frozen=True)
class ContainerFilters:
    """The parsed filters of one listing (`parse`), applied per container by `match`."""

    ids: tuple[str, ...] = ()
    names: tuple[saferegex.Matcher, ...] = ()
    labels: tuple[str, ...] = ()
    states: frozenset[str] = frozenset()
    exited: frozenset[int] = frozenset()
    ancestors: frozenset[str] | None = None     # image ids: a container of any of them or of a child matches
    before: datetime | None = None
    since: datetime | None = None
    volumes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    memberships: Mapping[str, frozenset[str]] | None = None  # container id -> its user networks' names and ids
    publish: tuple[PortRange, ...] = ()
    expose: tuple[PortRange, ...] = ()
    is_task: bool | None = None

    @property
    def implies_all(self) -> bool:
        """A status or exit-code filter looks at stopped containers too, as Docker's does (without -a)."""
        return bool(self.states or self.exited)

    @classmethod
    def parse(cls, rt: Runtime, given: Mapping[str, Iterable[str]]) -> ContainerFilters:
        """From the API's filters map (or the CLI's `--filter key=value`); an unknown key or a bad value
        is an InvalidArgument with Docker's message."""
        values = {key: [str(v) for v in vs] for key, vs in given.items()}
        known = {"id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume", "network",
                 "publish", "expose", "is-task", "health"}
        for key in values:
            if key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
        if values.get("health"):
            raise InvalidArgument("the health filter is not supported by pydock (it runs no healthchecks)")
        for state in values.get("status", []):
            if state not in STATES:
                raise InvalidArgument(f"invalid filter 'status={state}'")
        codes = set()
        for code in values.get("exited", []):
            try:
                codes.add(int(code))
            except ValueError:
                raise InvalidArgument(f"invalid filter 'exited={code}'") from None
        is_task = None
        for text in values.get("is-task", []):
            if text not in ("true", "false"):
                raise InvalidArgument(f"invalid filter 'is-task={text}'")
            is_task = text == "true"
        return cls(
            ids=tuple(values.get("id", [])),
            names=tuple(saferegex.compile(p) for p in values.get("name", [])),
            labels=tuple(values.get("label", [])),
            states=frozenset(values.get("status", [])),
            exited=frozenset(codes),
            ancestors=frozenset(_image_ids(rt, values["ancestor"])) if values.get("ancestor") else None,
            before=_created_of("before", values.get("before", []), _container_created(rt)),
            since=_created_of("since", values.get("since", []), _container_created(rt)),
            volumes=tuple(values.get("volume", [])),
            networks=tuple(values.get("network", [])),
            memberships=_memberships(rt) if values.get("network") else None,
            publish=tuple(PortRange.parse("publish", p) for p in values.get("publish", [])),
            expose=tuple(PortRange.parse("expose", p) for p in values.get("expose", [])),
            is_task=is_task)

    def match(self, rt: Runtime, c: Container, names: Iterable[str], paused: bool) -> bool:
        """Whether `c` (known by `names`, frozen or not) passes every filter."""
        if self.ids and not any(c.id.startswith(i) for i in self.ids):
            return False
        if self.names and not any(p.search(n.lstrip("/")) for p in self.names for n in names):
            return False
        if not all(has_label(c.config.get("Labels"), spec) for spec in self.labels):
            return False
        if self.states and c.state.docker_status(paused) not in self.states:
            return False
        if self.exited and (c.state.running or c.state.started_at is None or c.state.exit_code not in self.exited):
            return False
        if self.before is not None and c.created >= self.before:
            return False
        if self.since is not None and c.created <= self.since:
            return False
        if self.is_task:
            return False  # no container here is a swarm task
        if self.ancestors is not None and not self._descends(rt, c.image):
            return False
        if self.volumes and not any(_uses_volume(c, v) for v in self.volumes):
            return False
        if self.networks and not self._on_network(c):
            return False
        if self.publish and not any(r.covers(p) for r in self.publish for p in _published(c)):
            return False
        return not self.expose or any(r.covers(p) for r in self.expose for p in _exposed(c))

    def _on_network(self, c: Container) -> bool:
        """Whether `c` is on one of the networks asked for: its mode's (bridge, none, host) or a user
        network it is connected to, by name or id (prefix)."""
        names = {network_name(c), *(self.memberships or {}).get(c.id, ())}
        return any(want in names or (len(want) >= 12 and any(n.startswith(want) for n in names))
                   for want in self.networks)

    def _descends(self, rt: Runtime, image_id: str) -> bool:
        if not self.ancestors:
            return False  # only images that do not exist were named: nothing descends from them
        seen = 0
        current: str | None = image_id
        while current and seen < 1000:  # a parent chain is acyclic; the bound guards a corrupt graph
            if current in self.ancestors:
                return True
            try:
                current = rt.graph.get(current).parent
            except NotFound:
                return False
            seen += 1
        return False


def _image_ids(rt: Runtime, refs: Iterable[str]) -> set[str]:
    """The images `refs` name; one that does not exist names none (Docker lists nothing for it)."""
    out = set()
    for ref in refs:
        try:
            out.add(rt.images.get(ref).id)
        except NotFound:
            continue
    return out


def _created_of(key: str, refs: list[str], created: Callable[[str], datetime]) -> datetime | None:
    """A before/since filter: when the one thing it names (`created(ref)`) was made; None without one."""
    if not refs:
        return None
    if len(refs) > 1:
        raise InvalidArgument(f"more than one {key} filter specified")
    return created(refs[0])


def _container_created(rt: Runtime) -> Callable[[str], datetime]:
    def created(ref: str) -> datetime:
        try:
            return rt.get(ref).created
        except NotFound:
            raise InvalidArgument(f"No such container: {ref}") from None
    return created


def _memberships(rt: Runtime) -> dict[str, frozenset[str]]:
    """Container id -> the names and ids of the user networks it is connected to (one read of their store)."""
    out: dict[str, set[str]] = {}
    for rec in rt.user_networks.list():
        for cid in rec.endpoints:
            out.setdefault(cid, set()).update((rec.name, rec.id))
    return {cid: frozenset(names) for cid, names in out.items()}


def _uses_volume(c: Container, spec: str) -> bool:
    for dest, source in c.volumes.items():
        parts = source.rstrip("/").split("/")
        named = parts[-2] if len(parts) >= 2 and parts[-1] == "_data" else None
        if spec in (dest, source, named):
            return True
    return False


def network_name(c: Container) -> str:
    """The network a container's mode puts it on, as `ps` and its filter name it: none, host, bridge
    (the default one) or container:<name>."""
    if c.config.get("NetworkDisabled"):
        return "none"
    mode = c.hostconfig.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def _published(c: Container) -> list[str]:
    ports = (c.network or {}).get("Ports") or {}
    out = []
    for private, binds in ports.items():
        proto = private.partition("/")[2] or "tcp"
        out.extend(f"{b.get('HostPort')}/{proto}" for b in binds or ())
    return out


def _exposed(c: Container) -> list[str]:
    return [*(c.config.get("ExposedPorts") or {}), *((c.network or {}).get("Ports") or {})]


#: the `images --filter` keys carried out; any other is refused, never ignored
IMAGE_FILTERS = ("reference", "dangling", "label", "before", "since")


@dataclass(frozen=True)
class ImageFilters:
    """`images --filter` / `GET /images/json?filters=`: reference (`name`, `name:tag`, shell patterns),
    dangling, label (`key` or `key=value`), before and since (another image's creation)."""

    references: tuple[str, ...] = ()
    dangling: bool | None = None
    labels: tuple[str, ...] = ()
    before: datetime | None = None
    since: datetime | None = None

    @classmethod
    def parse(cls, rt: Runtime, given: Mapping[str, Iterable[str]]) -> ImageFilters:
        values = {key: [str(v) for v in vs] for key, vs in given.items()}
        for key in values:
            if key not in IMAGE_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling = None
        for text in values.get("dangling", []):
            if text.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={text}'")
            dangling = text.lower() in ("true", "1")
        return cls(tuple(values.get("reference", [])), dangling, tuple(values.get("label", [])),
                   _created_of("before", values.get("before", []), lambda ref: rt.images.get(ref).created),
                   _created_of("since", values.get("since", []), lambda ref: rt.images.get(ref).created))

    def keeps(self, image: Any) -> bool:
        """Whether the image passes the label, before and since filters."""
        labels = (image.config or {}).get("Labels")
        return all(has_label(labels, spec) for spec in self.labels) and \
            (self.before is None or image.created < self.before) and \
            (self.since is None or image.created > self.since)

    def names(self, tags: Iterable[str]) -> list[str]:
        """The image's `repo:tag` names the reference filter lets through (all without one)."""
        if not self.references:
            return list(tags)
        return [t for t in tags
                if any(fnmatchcase(t, p) or fnmatchcase(t.rsplit(":", 1)[0], p) for p in self.references)]

    def shows(self, tagged: bool) -> bool:
        """The dangling filter: only untagged images (true), only tagged ones (false), or both."""
        return self.dangling is None or self.dangling != tagged

