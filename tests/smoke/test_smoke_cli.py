"""The CLI's global behaviour: version output, unknown commands, the kernel report."""

from __future__ import annotations

import subprocess
import sys


def pydock(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pydock.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def test_version_names_version_commit_and_python() -> None:
    out = pydock("version")
    assert out.returncode == 0, out.stderr
    assert "Client version: 0.1.0" in out.stdout
    assert "Git commit: " in out.stdout
    assert f"Python version: {sys.version_info.major}.{sys.version_info.minor}" in out.stdout


def test_unknown_command_is_a_usage_error() -> None:
    out = pydock("frobnicate")
    assert out.returncode == 2
    assert "No such command 'frobnicate'" in out.stderr


def test_kernel_check_reports_device_mapper_state() -> None:
    from pydock.runtime.kernelcheck import check_features

    features = {f.name: f for f in check_features()}
    assert features["namespace mnt"].found
    assert features["overlay"].found
    dm = features["device-mapper thin-pool"]
    # inside UML the dm modules are loaded; on the host kernel there is no device-mapper at all
    import os

    assert dm.found == (os.environ.get("PYDOCK_IN_UML") == "1"), dm.detail
