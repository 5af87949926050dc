"""The build context: the tree COPY and ADD read from, and where the Dockerfile comes from.

A context is a directory: the user's own (`pydock build DIR`, its `.dockerignore` applied), or one a
tar stream (stdin, the API's request body, gzip or not) was extracted into, streamed through the safe
layer extractor into a scratch dir, never held in memory. Paths are resolved inside the tree: `..`
stops at its root and a symlink is followed only within it (an absolute target means the tree's root),
so nothing outside the context is ever read. The same rules serve `COPY --from` on an image's rootfs.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydock.runtime.builder.ignore import IgnoreMatcher, go_clean, read_patterns
from pydock.runtime.rootpath import resolve_in_root
from pydock.utils.errors import InvalidArgument, NotFound

log = logging.getLogger(__package__)

DEFAULT_DOCKERFILE = "Dockerfile"
IGNORE_FILE = ".dockerignore"
#: a Dockerfile larger than this is refused (Docker's parser stops at lines of 64 KiB; files are small)
MAX_DOCKERFILE = 16 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """One path of a tree walk: `rel` inside the tree, its lstat."""

    rel: str
    st: os.stat_result


class SourceTree:
    """A directory read as a build source: the context (with its ignore rules) or an image's rootfs."""

    def __init__(self, root: Path, ignore: IgnoreMatcher | None = None, what: str = "build context") -> None:
        self.root = Path(root)
        self.ignore = ignore if ignore else None
        self.what = what

    def excluded(self, rel: str) -> bool:
        return self.ignore is not None and self.ignore.excluded(rel)

    def clean(self, path: str) -> str:
        """A source path as written (`./a`, `/a/b/`, `a/../b`) as a path inside the tree; `..` past its root
        is refused."""
        cleaned = go_clean(path).lstrip("/")
        if cleaned == ".." or cleaned.startswith("../"):
            raise InvalidArgument(f"forbidden path outside the {self.what}: {path}")
        return "" if cleaned == "." else cleaned

    def resolve(self, rel: str) -> str:
        """`rel` with symlinks followed inside the tree (the path that is really read)."""
        try:
            host = resolve_in_root(self.root, rel)
        except ValueError as err:
            raise InvalidArgument(f"{rel}: {err}") from None
        return os.path.relpath(host, self.root) if host != self.root else ""

    def stat(self, rel: str) -> os.stat_result | None:
        """lstat of a resolved path, None if it is missing or excluded (a directory a `!` line re-includes
        something under is there)."""
        try:
            st = os.lstat(self.root / rel)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if rel and self.excluded(rel):
            if not (stat.S_ISDIR(st.st_mode) and self.ignore is not None and self.ignore.has_exclusions
                    and next(iter(self.walk(rel)), None) is not None):
                return None
        return st

    def open(self, rel: str) -> int:
        """A read fd of regular file `rel` (resolved), opened without following a symlink swapped in."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            parts = rel.split("/")
            for part in parts[:-1]:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        except OSError as err:
            raise InvalidArgument(f"cannot read {rel} from the {self.what}: {err.strerror}") from None
        finally:
            os.close(fd)

    def walk(self, rel: str) -> Iterator[Entry]:
        """Everything under directory `rel` (not itself), sorted, parents first, symlinks not followed,
        excluded paths left out (a directory is still entered when a `!` line may re-include below it;
        it is then listed only if something under it is)."""
        pending: list[Entry] = []  # excluded directories entered, listed once something under them is

        def visit(dir_rel: str) -> Iterator[Entry]:
            try:
                with os.scandir(self.root / dir_rel if dir_rel else self.root) as it:
                    names = sorted(e.name for e in it)
            except OSError as err:
                raise InvalidArgument(f"cannot read {dir_rel or '.'} in the {self.what}: {err.strerror}") from None
            for name in names:
                child = f"{dir_rel}/{name}" if dir_rel else name
                try:
                    st = os.lstat(self.root / child)
                except FileNotFoundError:
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if self.excluded(child):
                    if is_dir and self.ignore is not None and self.ignore.has_exclusions:
                        entry = Entry(child, st)
                        pending.append(entry)
                        yield from visit(child)
                        if pending and pending[-1] is entry:
                            pending.pop()
                    continue
                if pending:
                    yield from list(pending)
                    pending.clear()
                yield Entry(child, st)
                if is_dir:
                    yield from visit(child)

        yield from visit(rel)


class BuildContext(SourceTree):
    """The context tree and the Dockerfile read from it."""

    def __init__(self, root: Path, ignore: IgnoreMatcher | None, dockerfile: bytes, dockerfile_name: str) -> None:
        super().__init__(root, ignore)
        self.dockerfile = dockerfile
        self.dockerfile_name = dockerfile_name

    @classmethod
    def from_directory(cls, path: Path, dockerfile: str | None = None, dockerfile_text: bytes | None = None
                       ) -> BuildContext:
        """`pydock build DIR`: the directory itself, its .dockerignore applied to what COPY sees (the
        Dockerfile and .dockerignore too, when a pattern names them). `dockerfile` (`-f`) is a path from
        the current directory, as the docker CLI reads it; `dockerfile_text` one given on stdin."""
        root = Path(path)
        if not root.is_dir():
            raise InvalidArgument(f"unable to prepare context: path {str(path)!r} not found" if not root.exists()
                                  else f"unable to prepare context: {path} is not a directory")
        ignore = None
        ignore_path = root / IGNORE_FILE
        if ignore_path.is_file():
            ignore = IgnoreMatcher(read_patterns(_read_limited(ignore_path, IGNORE_FILE).decode("utf-8", "replace")))
        if dockerfile_text is not None:
            return cls(root, ignore, dockerfile_text, dockerfile or "-")
        if dockerfile:
            df_path = Path(dockerfile)
            name = dockerfile
        else:
            df_path = root / DEFAULT_DOCKERFILE
            if not df_path.exists() and (root / "dockerfile").exists():
                df_path = root / "dockerfile"
            name = df_path.name
        if not df_path.is_file():
            raise NotFound(f"Cannot locate specified Dockerfile: {name}")
        return cls(root, ignore, _read_limited(df_path, name), name)

    @classmethod
    def from_tar(cls, stream: BinaryIO, scratch: Path, dockerfile: str | None = None,
                 dockerfile_text: bytes | None = None) -> BuildContext:
        """A context sent as a tar (plain, gzip, bzip2 or xz), extracted into `scratch` as it streams in;
        the Dockerfile is read from it (`dockerfile`: a path inside the context), then it and
        .dockerignore are dropped from the tree when .dockerignore names them, as dockerd does."""
        from pydock.archive.apply import apply_layer  # lazy: the layer extractor, only for tar contexts

        root = scratch / "context"
        root.mkdir(mode=0o755)
        apply_layer(root, stream)
        tree = SourceTree(root)
        name = dockerfile or DEFAULT_DOCKERFILE
        if dockerfile_text is None:
            rel = tree.resolve(tree.clean(name))
            if not dockerfile and not (root / rel).is_file() and (root / "dockerfile").is_file():
                rel = "dockerfile"
            if not rel or not (root / rel).is_file():
                raise NotFound(f"Cannot locate specified Dockerfile: {name}")
            dockerfile_text = _read_limited(root / rel, name)
            name_rel = rel
        else:
            name_rel = ""
        ignore_path = root / IGNORE_FILE
        if ignore_path.is_file() and not ignore_path.is_symlink():
            patterns = IgnoreMatcher(read_patterns(_read_limited(ignore_path, IGNORE_FILE).decode("utf-8", "replace")))
            for rel in (IGNORE_FILE, name_rel):
                if rel and patterns.excluded(rel):
                    (root / rel).unlink(missing_ok=True)
        return cls(root, None, dockerfile_text, name)

    @classmethod
    def empty(cls, scratch: Path, dockerfile_text: bytes) -> BuildContext:
        """`pydock build - < Dockerfile`: no files, only the Dockerfile."""
        root = scratch / "context"
        root.mkdir(mode=0o755)
        return cls(root, None, dockerfile_text, "-")


def _read_limited(path: Path, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_DOCKERFILE + 1)
    except OSError as err:
        raise InvalidArgument(f"cannot read {name}: {err.strerror}") from None
    if len(data) > MAX_DOCKERFILE:
        raise InvalidArgument(f"{name} is larger than {MAX_DOCKERFILE >> 20} MiB")
    return data


def is_tar_stream(head: bytes) -> bool:
    """Whether stdin's first bytes start a (compressed) tar rather than a Dockerfile (the CLI's test)."""
    import tarfile  # lazy: the header check, only for `build -`

    from pydock.archive.compression import Compression, detect  # lazy: only for `build -`

    if detect(head) is not Compression.NONE:
        return True
    if len(head) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True
