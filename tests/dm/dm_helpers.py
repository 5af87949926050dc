"""Helpers for the device-mapper tier (imported by name: conftest modules of other dirs share that name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

SMALL = dict(data_size=512 << 20, metadata_size=32 << 20, base_size=64 << 20)


def dmsetup(*args: str) -> str:
    """The stock tool, an independent implementation to cross-check ours (no udev here)."""
    env = {**os.environ, "DM_DISABLE_UDEV": "1"}
    r = subprocess.run(["dmsetup", *args], capture_output=True, text=True, env=env, check=True)
    return r.stdout


def dm_names(prefix: str) -> set[str]:
    out = dmsetup("ls")
    if "No devices found" in out:
        return set()
    return {line.split()[0] for line in out.splitlines() if line.split() and line.startswith(prefix + "-")}


def loops_backing(home: Path) -> list[str]:
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip().startswith(str(home)):
                found.append(backing.parent.parent.name)
        except OSError:
            pass
    return found


@dataclass
class Pool:
    """One test's pool home; `open()` is a (re)start of DeviceSetDM on it in this process."""

    home: Path
    prefix: str
    scratch: Path
    opened: list = field(default_factory=list)
    options: dict = field(default_factory=lambda: dict(SMALL))

    def open(self, **overrides):
        from pydock.devmapper.dm_deviceset import DeviceSetDM

        ds = DeviceSetDM(self.home, prefix=self.prefix, **{**self.options, **overrides})
        self.opened.append(ds)
        return ds

    def mnt(self, name: str) -> Path:
        p = self.scratch / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def child(self, body: str, *, fault: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `body` in a new Python process with `ds` opened on this home (like another pydock)."""
        code = textwrap.dedent(f"""
            import os, sys, json
            from pathlib import Path
            from pydock.devmapper.dm_deviceset import DeviceSetDM
            ds = DeviceSetDM({str(self.home)!r}, prefix={self.prefix!r}, **{self.options!r})
        """) + textwrap.dedent(body)
        env = {k: v for k, v in os.environ.items() if k != "PYDOCK_DM_FAULT"}
        if fault:
            env["PYDOCK_DM_FAULT"] = fault
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              timeout=timeout, close_fds=True)

    def pool_record(self) -> dict:
        return json.loads((self.home / "pool.json").read_text())


def pool_thin_ids(ds, upto: int | None = None) -> set[int]:
    """Thin ids the kernel pool holds, probed one by one (the pool has no "list" message)."""
    top = upto if upto is not None else json.loads((ds.home / "pool.json").read_text())["next_thin_id"] + 4
    return {i for i in range(top) if ds.pool.thin_exists(i)}


def recorded_thin_ids(ds) -> set[int]:
    return {ds.store.get(h).thin_id for h in ds.store.hashes()}


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def tree(root: Path) -> dict[str, str]:
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            found[str(full.relative_to(root))] = full.read_text()
    return found
