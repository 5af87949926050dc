"""Where everything lives under a pydock root (the `-g/--graph` directory): one place for every path."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pydock.utils.errors import UnsafeRoot

DEFAULT_ROOT = "/var/lib/pydock"
ROOT_ENV = "PYDOCK_ROOT"
DRIVER_ENV = "PYDOCK_DRIVER"


@dataclass(frozen=True)
class RootLayout:
    """The directory tree of one pydock root."""

    root: Path

    @property
    def graph(self) -> Path:
        """Image metadata: `graph/<id>/{json,layersize}`; `graph/_tmp` for atomic register/delete."""
        return self.root / "graph"

    @property
    def graph_index(self) -> Path:
        """The graph index (graph.py `rows`): a cache of what `images` lists of every image."""
        return self.root / "graph.index"

    @property
    def graph_tmp(self) -> Path:
        return self.graph / "_tmp"

    def repositories(self, driver: str) -> Path:
        """The tag store (`{"Repositories": {name: {tag: id}}}`), one per storage driver like Docker 0.7."""
        return self.root / f"repositories-{driver}"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def containers_index(self) -> Path:
        """The listing index (runtime/listindex.py): a cache of what `ps` needs of every container."""
        return self.root / "containers.index"

    @property
    def container_rows_index(self) -> Path:
        """The rows index (runtime/listindex.py): a cache of the listing row (`ps`) of every container."""
        return self.root / "containers.rows"

    def container(self, container_id: str) -> Path:
        return self.containers / container_id

    def driver_home(self, driver: str) -> Path:
        """Private directory of a storage driver (`devicemapper/`, `overlay/`, `vfs/`)."""
        return self.root / driver

    @property
    def volumes(self) -> Path:
        """Anonymous volumes (`-v /ctr`), one directory each."""
        return self.root / "volumes"

    @property
    def linkgraph(self) -> Path:
        """SQLite name/link graph."""
        return self.root / "linkgraph.db"

    @property
    def network(self) -> Path:
        """Bridge/IP-allocation state."""
        return self.root / "network"

    @property
    def lxc(self) -> Path:
        """The lxcpath handed to lxc tools (`-P`), so lxc state stays under the root."""
        return self.root / "lxc"

    @property
    def trash(self) -> Path:
        """Trees already removed (renamed here at once), deleted after the command answers
        (utils/afterwards.py); what a crash left is deleted when the next Runtime opens."""
        return self.root / "trash"

    @property
    def init(self) -> Path:
        """Copies of the dockerinit helper, `init/dockerinit-<version>`."""
        return self.root / "init"

    @property
    def lock(self) -> Path:
        """Lock file serialising whole-root operations (reconcile, create/remove) across processes."""
        return self.root / ".lock"


def check_private_root(root: Path) -> None:
    """Refuse a state root another user could write into: it must be a directory owned by us (root)
    and not writable by group or others. Everything below it (images, containers' config, the names
    database, lxc configs) is trusted as pydock's own."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    me = os.geteuid()
    if st.st_uid != me:
        owner = "root" if me == 0 else f"uid {me}"
        raise UnsafeRoot(f"Refusing to use {root} as pydock's root: it is owned by uid {st.st_uid}, not {owner} "
                         f"(chown {owner} {root})")
    if st.st_mode & 0o022:
        raise UnsafeRoot(f"Refusing to use {root} as pydock's root: it is writable by group or others "
                         f"(mode {stat.S_IMODE(st.st_mode):04o}; chmod go-w {root})")
