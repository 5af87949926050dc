"""Storage-driver choice as a CLI user sees it: `-s/--storage-driver` and PYDOCK_DRIVER."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pydock.devmapper.drivers import devicemapper_usable


def pydock(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYDOCK_DRIVER", "PYDOCK_ROOT")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pydock.cli.main", "-g", str(root), *args],
                          capture_output=True, text=True, timeout=120, env=full_env)


def test_asking_for_devicemapper_without_it_says_why_in_one_line(tmp_path: Path) -> None:
    if devicemapper_usable()[0]:
        pytest.skip("this kernel has dm-thin")
    out = pydock(tmp_path / "root", "-s", "devicemapper", "images")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("Error: driver devicemapper not supported: ")
    assert "/dev/mapper/control" in lines[0]
    assert not (tmp_path / "root" / "devicemapper").exists()


def test_an_unknown_driver_is_a_usage_error_naming_the_valid_ones(tmp_path: Path) -> None:
    out = pydock(tmp_path / "root", "-s", "aufs", "images")
    assert out.returncode == 2
    assert out.stderr.strip() == "Error: unknown storage driver 'aufs' (valid: devicemapper, overlay, vfs)"


def test_pydock_driver_environment_variable_selects_the_driver(tmp_path: Path) -> None:
    out = pydock(tmp_path / "root", "images", env={"PYDOCK_DRIVER": "nonexistent"})
    assert out.returncode == 2
    assert "unknown storage driver 'nonexistent'" in out.stderr


def _import_busybox(root: Path, tmp_path: Path, busybox_tar: bytes, driver: str, repo: str) -> None:
    tarball = tmp_path / "busybox.tar"
    tarball.write_bytes(busybox_tar)
    out = pydock(root, "-s", driver, "import", str(tarball), repo)
    assert out.returncode == 0, out.stderr


def _repositories(root: Path, *global_args: str) -> list[str]:
    """The REPOSITORY column of `pydock [global_args] images` (which must succeed)."""
    images = pydock(root, *global_args, "images")
    assert images.returncode == 0, images.stderr
    return [line.split()[0] for line in images.stdout.splitlines()[1:]]


def test_a_root_keeps_the_driver_its_layers_are_in(tmp_path: Path, busybox_tar: bytes) -> None:
    """Without -s, a root whose images are vfs layers goes on with vfs, though overlay comes first by
    preference: its images stay listed (Docker's prior-driver rule; an overlay root likewise stays overlay
    once dm-thin is loaded)."""
    root = tmp_path / "root"
    _import_busybox(root, tmp_path, busybox_tar, "vfs", "busybox")
    assert _repositories(root) == ["busybox"]
    info = pydock(root, "info")
    assert "Storage Driver: vfs" in info.stdout.splitlines(), info.stdout
    assert not (root / "overlay" / "devices").exists() or not any((root / "overlay" / "devices").iterdir())


def test_a_root_holding_two_drivers_layers_asks_for_one(tmp_path: Path, busybox_tar: bytes) -> None:
    root = tmp_path / "root"
    _import_busybox(root, tmp_path, busybox_tar, "vfs", "in-vfs")
    _import_busybox(root, tmp_path, busybox_tar, "overlay", "in-overlay")
    out = pydock(root, "images")
    assert out.returncode == 2
    assert out.stderr.strip() == (f"Error: {root} holds the layers of several storage drivers (overlay, vfs): "
                                  "choose one with -s, or remove the others' images and containers")
    assert _repositories(root, "-s", "overlay") == ["in-overlay"]


@pytest.mark.dm
def test_a_vfs_root_stays_vfs_on_a_kernel_with_dm_thin(tmp_path: Path, busybox_tar: bytes) -> None:
    """Where devicemapper would be chosen for a new root, a root made before dm-thin was there keeps its
    driver and its images."""
    assert devicemapper_usable()[0]
    root = tmp_path / "root"
    _import_busybox(root, tmp_path, busybox_tar, "vfs", "busybox")
    assert _repositories(root) == ["busybox"]
    assert not (root / "devicemapper").exists()  # no pool made beside it
