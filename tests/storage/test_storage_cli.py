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
