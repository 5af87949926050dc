"""Repository tags: `repositories-<driver>` = `{"Repositories": {"name": {"tag": "id"}}}` like Docker 0.7.

Every change is read-modify-write under an fcntl lock on `<file>.lock` and replaces the file
atomically, so concurrent pydock processes never lose each other's tags and readers never see a
torn file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydock.utils.fileutil import atomic_write, flocked
from pydock.utils.errors import Conflict, InvalidArgument, StorageError
from pydock.utils.ids import is_valid_id, truncate_id, validate_id

DEFAULT_TAG = "latest"

# optional registry host[:port]/ then lowercase path components
_REPO_RE = re.compile(r"^(?:[a-zA-Z0-9][a-zA-Z0-9.-]*(?::[0-9]+)?/)?[a-z0-9][a-z0-9_.-]*(?:/[a-z0-9][a-z0-9_.-]*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

Repositories = dict[str, dict[str, str]]


def validate_repo(name: str) -> str:
    """`name` if it is a valid repository name (lowercase [a-z0-9-_./], optional host:port/ prefix)."""
    if not name or len(name) > 255 or not _REPO_RE.match(name):
        raise InvalidArgument(f"Invalid repository name ({name}), only [a-z0-9-_./] are allowed")
    if is_valid_id(name):
        raise InvalidArgument(f"Invalid repository name ({name}), cannot be a 64-character image id")
    return name


def validate_tag(tag: str) -> str:
    """`tag` if it matches [A-Za-z0-9_.-]{1,128}."""
    if not _TAG_RE.match(tag or ""):
        raise InvalidArgument(f"Illegal tag name ({tag}): only [A-Za-z0-9_.-] are allowed, 1 to 128 characters")
    return tag


def split_reference(ref: str) -> tuple[str, str | None]:
    """Split `repo[:tag]` at the last colon after the last slash (so `host:5000/repo` keeps its port)."""
    colon = ref.rfind(":")
    if colon > ref.rfind("/"):
        return ref[:colon], ref[colon + 1:]
    return ref, None


def parse_reference(ref: str) -> tuple[str, str]:
    """(`repo`, `tag`) from `repo[:tag]`, validated; the tag defaults to `latest`."""
    repo, tag = split_reference(ref)
    validate_repo(repo)
    return repo, validate_tag(tag) if tag is not None else DEFAULT_TAG


class TagStore:
    """name:tag -> image id, persisted in one json file per storage driver."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = self.path.with_name(self.path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    # ---- persistence --------------------------------------------------------------------

    def _read(self) -> Repositories:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            repos = data["Repositories"]
            if not isinstance(repos, dict):
                raise TypeError("Repositories is not an object")
            return {str(r): {str(t): str(i) for t, i in tags.items()} for r, tags in repos.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise StorageError(f"Corrupt tag store {self.path}: {err}") from None

    @contextmanager
    def _editing(self) -> Iterator[Repositories]:
        """Read under the lock, let the caller mutate, write back atomically if it changed."""
        with flocked(self._lock):
            repos = self._read()
            before = json.dumps(repos, sort_keys=True)
            yield repos
            repos = {r: t for r, t in repos.items() if t}
            if json.dumps(repos, sort_keys=True) != before:
                atomic_write(self.path, json.dumps({"Repositories": repos}, sort_keys=True).encode())

    def repositories(self) -> Repositories:
        """A snapshot copy of every repository and its tags."""
        return self._read()

    # ---- API ----------------------------------------------------------------------------

    def set(self, repo: str, tag: str | None, image_id: str, force: bool = False) -> None:
        """Point `repo:tag` at `image_id`; an existing different target needs `force`."""
        validate_repo(repo)
        tag = validate_tag(tag) if tag is not None else DEFAULT_TAG
        validate_id(image_id)
        with self._editing() as repos:
            old = repos.get(repo, {}).get(tag)
            if old is not None and old != image_id and not force:
                raise Conflict(f"Conflict: Tag {repo}:{tag} is already set to image {truncate_id(old)}, "
                               "use -f to replace it")
            repos.setdefault(repo, {})[tag] = image_id

    def get(self, repo: str, tag: str | None = DEFAULT_TAG) -> str | None:
        """The image id `repo:tag` points at, or None."""
        return self._read().get(repo, {}).get(tag or DEFAULT_TAG)

    def delete(self, repo: str, tag: str | None = DEFAULT_TAG) -> bool:
        """Remove `repo:tag`; True if it existed."""
        tag = tag or DEFAULT_TAG
        with self._editing() as repos:
            if tag not in repos.get(repo, {}):
                return False
            del repos[repo][tag]
            return True

    def by_image(self) -> dict[str, list[str]]:
        """image id -> its sorted `repo:tag` names."""
        out: dict[str, list[str]] = {}
        for repo, tags in self._read().items():
            for tag, image_id in tags.items():
                out.setdefault(image_id, []).append(f"{repo}:{tag}")
        return {k: sorted(v) for k, v in out.items()}

    def names_for(self, image_id: str) -> list[str]:
        return self.by_image().get(image_id, [])

    def remove_image(self, image_id: str) -> list[str]:
        """Drop every tag pointing at `image_id`; returns the removed `repo:tag` names."""
        removed = []
        with self._editing() as repos:
            for repo, tags in repos.items():
                for tag in [t for t, i in tags.items() if i == image_id]:
                    del tags[tag]
                    removed.append(f"{repo}:{tag}")
        return sorted(removed)

    def image_name(self, image_id: str) -> str:
        """The first `repo:tag` of the image, else its short id (Docker's ImageName)."""
        names = self.names_for(image_id)
        return names[0] if names else truncate_id(image_id)
