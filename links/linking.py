"""Link policy on top of the name graph, shaped so each runtime call site is one line.

A link is the name `/<parent>/<alias>` pointing at the child's id (Docker 0.7): registering a link is
`GraphDB.set`, listing a parent's links is `children(parent, 0)`, `rm --link` deletes the edge.
Container facts (is it running, what is its primary name) come in as callables from the runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydock.links.graphdb import GraphDB, normalize_path, split_path
from pydock.links.names import generate_name, parse_link, validate_name
from pydock.utils.errors import Conflict, InvalidArgument, NotFound

log = logging.getLogger(__package__)

@dataclass(frozen=True)
class LinkRef:
    """One link edge: `/web/db` (path) from the parent to the child, known inside the parent as `db`."""

    path: str
    alias: str
    parent_id: str
    child_id: str


def primary_name(names: GraphDB, entity_id: str) -> str | None:
    """The container's default name `/<name>` (a direct child of `/`), or None."""
    for path in names.ref_paths(entity_id):
        if path.count("/") == 1:
            return path
    return None


def assign_name(names: GraphDB, container_id: str, requested: str | None = None) -> str:
    """Register the container's primary name: `requested` (validated; Conflict if taken) or a generated one.

    A generated name that another process takes between the check and the insert is simply retried;
    after that the 12-char id is used, as in Docker 0.7. Returns the path, e.g. `/quiet_turing`.
    """
    if requested:
        path = validate_name(requested)
        names.set(path, container_id)
        return path
    for _ in range(10):
        path = "/" + generate_name(lambda n: names.exists("/" + n))
        try:
            names.set(path, container_id)
            return path
        except Conflict:
            log.debug("generated name %s was taken meanwhile: trying another", path)
    path = "/" + container_id[:12]
    names.set(path, container_id)
    return path


def display_names(paths: Iterable[str]) -> str:
    """`ps` NAMES: every path without its leading `/`, comma-joined (`redis,webapp/db`)."""
    return ",".join(p[1:] for p in paths)


def prune_names(names: GraphDB, known_ids: Iterable[str]) -> list[str]:
    """Purge every entity that is not a known container (names left by a crash); the ids purged."""
    known = set(known_ids)
    stale = [e for e in names.entities() if e not in known]
    for entity in stale:
        names.purge(entity)
    return stale


def register_links(names: GraphDB, parent_name: str, parent_id: str, link_specs: Iterable[str],
                   resolve: Callable[[str], str], is_running: Callable[[str], bool]) -> list[LinkRef]:
    """Check every `name:alias` and create its `/<parent>/<alias>` name; all or nothing.

    `resolve(name)` gives the child id (NotFound if none); `is_running(id)` says whether it runs.
    """
    parent = normalize_path(parent_name)
    planned: list[LinkRef] = []
    for spec in link_specs:
        name, alias = parse_link(spec)
        path = f"{parent}/{alias}"
        # the parent may not be resolvable as a container yet (its record is written after its names)
        if names.get(normalize_path(name)) == parent_id:
            raise Conflict("Cannot link to self")
        child_id = resolve(name)
        if child_id == parent_id:
            raise Conflict("Cannot link to self")
        if not is_running(child_id):
            child_name = primary_name(names, child_id) or normalize_path(name)
            raise Conflict(f"Cannot link to a non running container: {child_name} AS {path}")
        if any(p.path == path for p in planned):
            raise Conflict(f"Conflict, the alias {alias} is given twice")
        planned.append(LinkRef(path, alias, parent_id, child_id))
    done: list[LinkRef] = []
    try:
        for link in planned:
            if names.get(link.path) == link.child_id:
                continue  # already registered (a restart re-registering the same links)
            names.set(link.path, link.child_id)
            done.append(link)
    except BaseException:
        for link in done:
            try:
                names.delete(link.path)
            except NotFound:  # what we undo is gone already (removed concurrently): nothing left to undo
                log.debug("rolling back link %s: already gone", link.path)
        raise
    return planned


def active_links(names: GraphDB, parent_name: str | None) -> list[LinkRef]:
    """The parent's links (direct children of its primary name), for env, hosts and rules at start."""
    if not parent_name:
        return []
    parent = normalize_path(parent_name)
    parent_id = names.get(parent)
    if parent_id is None:
        return []
    return [LinkRef(path, split_path(path)[1], parent_id, child_id)
            for path, child_id in names.children(parent, depth=0)]


def remove_link(names: GraphDB, path: str) -> LinkRef:
    """`rm --link /parent/alias`: delete that name only (the child is untouched); the caller disables its rules."""
    try:
        full = normalize_path(path)
    except InvalidArgument:
        raise NotFound(f"No such link: {path}") from None
    child_id = names.get(full)
    if child_id is None or full == "/":
        raise NotFound(f"No such link: {path}")
    parent_path, alias = split_path(full)
    if parent_path == "/":
        raise Conflict("Conflict, cannot remove the default name of the container")
    parent_id = names.get(parent_path)
    if parent_id is None:
        raise NotFound(f"Cannot get parent {parent_path} for name {full}")
    names.delete(full)
    return LinkRef(full, alias, parent_id, child_id)


def links_to(names: GraphDB, child_id: str) -> list[LinkRef]:
    """Links that point at `child_id` (names other than its primary one), e.g. to warn before removing it."""
    out = []
    for path in names.ref_paths(child_id):
        parent_path, alias = split_path(path)
        if parent_path == "/":
            continue
        parent_id = names.get(parent_path)
        if parent_id is not None:
            out.append(LinkRef(path, alias, parent_id, child_id))
    return out
