"""`ImageStore`: the graph plus its tag store, and the user-facing operations on references.

A reference is `repo[:tag]` (tag defaults to `latest`), a full 64-hex id, or a unique id prefix;
tags are looked up first, like Docker. `busybox[:latest]` is built from the host when missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from pydock.devmapper.driver import Driver
from pydock.graph.distribution import reference
from pydock.graph.graph import Graph
from pydock.graph.image import Image
from pydock.graph.tags import DEFAULT_TAG, TagStore, split_reference, validate_repo, validate_tag
from pydock.utils.errors import Conflict, InvalidArgument, NotFound
from pydock.utils.paths import RootLayout

InUse = Callable[[str], "str | None"]
#: image id -> the id of a container using it, read once per operation (every container is read).
ImageUsers = Callable[[], Mapping[str, str]]


@dataclass(frozen=True)
class HistoryRow:
    """One line of `history`: the graph image holding the layer (None for an empty config step)."""

    id: str | None
    created: datetime | None
    created_by: str
    size: int
    comment: str


class ImageStore:
    """Images and tags of one root on one storage driver."""

    def __init__(self, layout: RootLayout, driver: Driver, users: ImageUsers | None = None) -> None:
        self.layout = layout
        self.driver = driver
        self.graph = Graph(layout, driver)
        self.tags = TagStore(layout.repositories(driver.name))
        #: hook the runtime sets: which containers use which images (a used image is not removed).
        self.users = users
        #: hook the runtime sets: (action, image id or name, attributes) for its events journal
        self.on_event: Callable[[str, str, dict[str, str]], None] | None = None

    def event(self, action: str, actor: str, **attributes: str) -> None:
        """Report an image event (import, tag, untag, delete, pull, push, load, save) to the hook."""
        if self.on_event is not None:
            self.on_event(action, actor, attributes)

    # ---- lookup -------------------------------------------------------------------------

    def _tagged(self, ref: str) -> tuple[str, str, str] | None:
        """(repo, tag, image id) when `ref` names a tag here, as typed or in its familiar form
        (`docker.io/library/busybox` is `busybox`)."""
        repo, tag = split_reference(ref)
        image_id = self.tags.get(repo, tag or DEFAULT_TAG)
        if image_id:
            return repo, tag or DEFAULT_TAG, image_id
        if "@" in ref:
            return None
        try:
            parsed = reference.parse(ref)
        except InvalidArgument:
            return None
        if parsed.familiar != repo and parsed.tag:
            image_id = self.tags.get(parsed.familiar, parsed.tag)
            if image_id:
                return parsed.familiar, parsed.tag, image_id
        return None

    def tag_named(self, ref: str) -> str | None:
        """`repo:tag` when `ref` names a tag (not an id or digest), else None."""
        found = self._tagged(ref)
        return f"{found[0]}:{found[1]}" if found else None

    def lookup(self, ref: str) -> Image | None:
        """The image `ref` names via tags, `repo@sha256:digest`, then id prefix, or None; never builds anything."""
        found = self._tagged(ref)
        if found and self.graph.exists(found[2]):
            return self.graph.get(found[2])
        if "@" in ref:
            try:
                parsed = reference.parse(ref)
            except InvalidArgument:
                return None
            from pydock.graph import assemble  # lazy: layer assembly (~18 ms of imports), only by digest

            image_id = assemble.find_by_repo_digest(self.graph, f"{parsed.familiar}@{parsed.digest}")
            return self.graph.get(image_id) if image_id else None
        repo, tag = split_reference(ref)
        if tag is None or (ref.startswith("sha256:") and ref.count(":") == 1):
            try:
                return self.graph.get(ref.removeprefix("sha256:"))
            except NotFound as err:
                if "ambiguous" in str(err):
                    raise
        return None

    def resolve(self, ref: str) -> Image:
        """The image `ref` names; `busybox`/`busybox:latest` is built on first use; NotFound otherwise."""
        if not ref:
            raise InvalidArgument("Image name cannot be empty")
        image = self.lookup(ref)
        if image is not None:
            return image
        if ref in ("busybox", "busybox:latest"):
            from pydock.graph.busybox import ensure_busybox  # lazy: built once per root; its tar writer stays off other paths

            return ensure_busybox(self)
        raise NotFound(f"Unable to find image '{ref}'")

    def get(self, ref: str) -> Image:
        """Like resolve, without building busybox (for rmi/history/tag on existing images)."""
        image = self.lookup(ref)
        if image is None:
            raise NotFound(f"No such image: {ref}")
        return image

    def name_of(self, image_id: str) -> str:
        """`repo:tag` of the image if tagged, else its short id (for `ps` IMAGE column)."""
        return self.tags.image_name(image_id)

    def diff_ids(self, image: Image) -> list[str]:
        """RootFS.Layers: the diff ids of the image's layers, bottom first (as far as they are recorded)."""
        out = []
        for img in reversed(self.graph.history(image)):
            info = self.graph.layer_info(img.id)
            if info is not None and info.diff_id:
                out.append(info.diff_id)
        return out

    def repo_digests(self, image_id: str) -> list[str]:
        from pydock.graph import assemble  # lazy: see lookup

        return assemble.repo_digests(self.graph, image_id)

    def history(self, image: Image) -> list[HistoryRow]:
        """`history`, newest first: an image with a config shows the config's history (empty layers with
        no id), each layer with the graph image that holds it; an image made here shows its chain."""
        from pydock.graph import imageconfig  # lazy: image configs, only for history

        raw = imageconfig.stored_config(self.graph, image)
        chain = self.graph.history(image)
        if raw is not None:
            entries = imageconfig.history(imageconfig.parse_config(raw))
            layers = imageconfig.layer_chain(self.graph, image)
            if entries and sum(not e.empty_layer for e in entries) == len(layers):
                rows: list[HistoryRow] = []
                it = iter(layers)
                for e in entries:
                    layer = None if e.empty_layer else next(it)
                    rows.append(HistoryRow(layer.id if layer else None, e.created, e.created_by,
                                           layer.size if layer else 0, e.comment))
                rows.reverse()
                rows[0] = HistoryRow(image.id, rows[0].created, rows[0].created_by, rows[0].size, rows[0].comment)
                return rows
        out = []
        for img in chain:
            cmd = (img.container_config or {}).get("Cmd") or []
            out.append(HistoryRow(img.id, img.created, " ".join(cmd) if isinstance(cmd, list) else str(cmd),
                                  img.size, img.comment))
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        """`inspect IMAGE`: Docker 0.7's json plus RepoTags, RepoDigests and RootFS.Layers."""
        image = self.get(ref)
        out = image.to_dict()
        out["RepoTags"] = self.tags.names_for(image.id)
        out["RepoDigests"] = self.repo_digests(image.id)
        out["RootFS"] = {"Type": "layers", "Layers": self.diff_ids(image)}
        return out

    # ---- changes ------------------------------------------------------------------------

    def import_(self, stream: BinaryIO, repo: str | None = None, tag: str | None = None, *,
                source: str = "-", changes: list[str] | None = None) -> Image:
        """Register a (possibly compressed) tarball as a parentless image, tagging it when asked; `changes`
        are Dockerfile instructions (CMD, ENV, ...) for its config."""
        if repo is None and tag is not None:
            raise InvalidArgument("A tag needs a repository name")
        if repo is not None:
            validate_repo(repo)
            if tag is not None:
                validate_tag(tag)
        from pydock.graph.instructions import apply_changes  # lazy: the Dockerfile parser, only for import

        config = apply_changes(None, list(changes or []))  # bad instructions fail before the layer is read
        image = self.graph.register(stream, comment=f"Imported from {source}", config=config)
        if repo is not None:
            self.tags.set(repo, tag or DEFAULT_TAG, image.id, force=True)
        self.event("import", image.id, name=f"{repo}:{tag or DEFAULT_TAG}" if repo else image.id)
        return image

    def create(self, stream: BinaryIO, *, parent: str | None, repo: str | None = None, tag: str | None = None,
               comment: str = "", author: str = "", config: dict[str, Any] | None = None,
               container: str | None = None, container_config: dict[str, Any] | None = None) -> Image:
        """Docker's Graph.Create for `commit`: register a layer on `parent`, then tag it (force) if asked."""
        if repo is not None:
            validate_repo(repo)
            if tag is not None:
                validate_tag(tag)
        image = self.graph.register(stream, parent=parent, comment=comment, author=author, config=config,
                                    container=container, container_config=container_config)
        if repo is not None:
            self.tags.set(repo, tag or DEFAULT_TAG, image.id, force=True)
        return image

    def tag(self, ref: str, repo: str, tag: str | None = None, force: bool = False) -> Image:
        """Point `repo:tag` at the image `ref` names."""
        image = self.get(ref)
        self.tags.set(repo, tag or DEFAULT_TAG, image.id, force=force)
        self.event("tag", image.id, name=f"{repo}:{tag or DEFAULT_TAG}")
        return image

    def untag(self, repo: str, tag: str | None = None) -> bool:
        image_id = self.tags.get(repo, tag or DEFAULT_TAG)
        done = self.tags.delete(repo, tag or DEFAULT_TAG)
        if done and image_id is not None:
            self.event("untag", image_id, name=f"{repo}:{tag or DEFAULT_TAG}")
        return done

    def in_use(self) -> InUse | None:
        """Who uses an image, from one read of the containers made on the first question: an operation
        asks once per image it considers (an rmi its image and each parent, a prune every leaf)."""
        if self.users is None:
            return None
        read = self.users
        snapshot: Mapping[str, str] | None = None

        def user_of(image_id: str) -> str | None:
            nonlocal snapshot
            if snapshot is None:
                snapshot = read()
            return snapshot.get(image_id)
        return user_of

    def remove(self, ref: str, in_use: InUse | None = None) -> list[str]:
        """Docker's rmi: untag `ref`, then delete the image (and untagged unused parents) if nothing else names it.

        Returns the output lines (`Untagged: repo:tag`, `Deleted: <id>`).
        """
        in_use = in_use or self.in_use()
        repo, tag = split_reference(ref)
        by_tag = self.tags.get(repo, tag or DEFAULT_TAG)
        lines: list[str] = []
        if by_tag is not None:
            image = self.graph.get(by_tag) if self.graph.exists(by_tag) else None
            names = self.tags.names_for(by_tag)
            if len(names) <= 1 and image is not None:
                self._check_deletable(image, ref, in_use, by_name=True)
            self.tags.delete(repo, tag or DEFAULT_TAG)
            lines.append(f"Untagged: {repo}:{tag or DEFAULT_TAG}")
            self.event("untag", by_tag, name=f"{repo}:{tag or DEFAULT_TAG}")
            if image is None or self.tags.names_for(by_tag):
                return lines
        else:
            image = self.get(ref)
            names = self.tags.names_for(image.id)
            repos = {split_reference(n)[0] for n in names}
            if len(repos) > 1:
                raise Conflict(f"Conflict, cannot delete image {image.short_id} because it is tagged in "
                               f"multiple repositories ({', '.join(names)})")
            self._check_deletable(image, ref, in_use, by_name=False)
            for name in self.tags.remove_image(image.id):
                lines.append(f"Untagged: {name}")
                self.event("untag", image.id, name=name)
        if self.graph.children(image.id):
            return lines  # still a parent: keep the layer, like Docker
        lines.extend(self._delete_chain(image, in_use))
        return lines

    def prune(self, *, every_unused: bool = False, in_use: InUse | None = None,
              match: Callable[[Image], bool] | None = None) -> tuple[list[str], int]:
        """Docker's `image prune`: delete the dangling images (untagged, childless, used by no container),
        each with the untagged parents nothing else needs; with `every_unused` also tagged images no
        container uses; only those `match` accepts (prune's filters). Returns (the `Untagged: ...`/
        `Deleted: <id>` lines, bytes freed)."""
        in_use = in_use or self.in_use()
        lines: list[str] = []
        freed = 0
        while True:
            images = self.graph.list()
            sizes = {i.id: i.size for i in images}
            by_image = self.tags.by_image()
            parents = {i.parent for i in images if i.parent}
            leaves = [i for i in images if i.id not in parents and (every_unused or not by_image.get(i.id))
                      and not (in_use is not None and in_use(i.id)) and (match is None or match(i))]
            if not leaves:
                return lines, freed
            for image in leaves:
                lines.extend(f"Untagged: {name}" for name in self.tags.remove_image(image.id))
                deleted = self._delete_chain(image, in_use)
                lines.extend(deleted)
                freed += sum(sizes.get(line.removeprefix("Deleted: "), 0) for line in deleted)

    def _check_deletable(self, image: Image, ref: str, in_use: InUse | None, by_name: bool) -> None:
        if in_use is not None:
            holder = in_use(image.id)
            if holder:
                raise Conflict(f"Conflict, cannot delete {ref} because the container "
                               f"{holder[:12]} is using it")
        if not by_name and self.graph.children(image.id):
            raise Conflict(f"Conflict, cannot delete {image.short_id} because it has child images")

    def _delete_chain(self, image: Image, in_use: InUse | None) -> list[str]:
        """Delete `image`, then each parent left untagged, childless and unused (Docker's auto-prune)."""
        lines = []
        current: Image | None = image
        while current is not None:
            self.graph.delete(current.id, in_use=in_use)
            lines.append(f"Deleted: {current.id}")
            self.event("delete", current.id, name=current.id)
            parent_id = current.parent
            current = None
            if parent_id and self.graph.exists(parent_id):
                if self.tags.names_for(parent_id) or self.graph.children(parent_id):
                    break
                if in_use is not None and in_use(parent_id):
                    break
                current = self.graph.get(parent_id)
        return lines
