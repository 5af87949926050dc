"""The CLI's global behaviour: version output, unknown commands, the kernel report."""

from __future__ import annotations

import subprocess
import sys

import pytest


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
    assert out.returncode == 125
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


def test_info_on_the_host_names_overlay_and_the_missing_device_mapper(tmp_path) -> None:
    out = pydock("-g", str(tmp_path / "root"), "info")
    assert out.returncode == 0, out.stderr
    assert "Storage Driver: overlay" in out.stdout
    assert "device-mapper thin-pool: missing" in out.stdout
    assert " Why: overlay: device-mapper missing from this kernel" in out.stdout


@pytest.mark.dm
def test_info_in_the_dm_kernel_reports_the_pool(tmp_path) -> None:
    small = ("--storage-opt", "dm.loopdatasize=1G", "--storage-opt", "dm.loopmetadatasize=64M",
             "--storage-opt", "dm.basesize=128M")
    out = pydock("-g", str(tmp_path / "root"), *small, "info")
    assert out.returncode == 0, out.stderr
    assert "Storage Driver: devicemapper" in out.stdout
    assert "device-mapper thin-pool: found" in out.stdout
    for line in ("Pool Name: ", "Data Space Total: 1024.0 Mb", "Metadata Space Total: 64.0 Mb"):
        assert line in out.stdout
    again = pydock("-g", str(tmp_path / "root"), "info")  # the pool made by the first call is reused
    assert "Data Space Total: 1024.0 Mb" in again.stdout, again.stdout + again.stderr
    # leave no pool behind for the session leak check
    from pydock.devmapper.drivers import open_deviceset

    open_deviceset(tmp_path / "root", "devicemapper")[0].shutdown()


def test_storage_options_are_checked_before_anything_is_made(tmp_path) -> None:
    out = pydock("-g", str(tmp_path / "root"), "--storage-opt", "dm.basesize=lots", "ps")
    assert out.returncode == 2 and out.stderr == "Error: invalid size for dm.basesize: 'lots' (e.g. 10G, 512M)\n"
    out = pydock("-g", str(tmp_path / "root"), "--storage-opt", "dm.fs=xfs", "ps")
    assert out.returncode == 2 and out.stderr.startswith("Error: unknown storage option 'dm.fs=xfs'")
    assert not (tmp_path / "root").exists()


def test_a_D_in_the_container_command_is_not_pydocks_debug_flag(tmp_path) -> None:
    """`grep -D skip` after the image is the command's own option: the error that follows is one line."""
    for flag in ("-D", "--debug"):
        out = pydock("-g", str(tmp_path / "root"), "run", "--pull", "never", "no-such-image", "grep", flag, "skip", "x")
        assert out.returncode == 125
        assert out.stderr == "Error: Unable to find image 'no-such-image'\n"


@pytest.mark.parametrize("flag", ["-D", "--debug"])
def test_the_debug_flag_logs_debug_lines_and_the_errors_traceback(tmp_path, flag: str) -> None:
    out = pydock("-g", str(tmp_path / "root"), flag, "run", "--pull", "never", "no-such-image", "grep", "x")
    assert out.returncode == 125
    lines = out.stderr.splitlines()
    assert lines[0].startswith("DEBUG pydock.cli: pid "), out.stderr
    assert "DEBUG pydock.cli: NotFound: Unable to find image 'no-such-image'" in lines
    assert "Traceback (most recent call last):" in lines
    assert lines[-1] == "Error: Unable to find image 'no-such-image'"


def test_library_records_reach_stderr_one_line_each_at_the_cli_level(capsys) -> None:
    """The CLI's logging set-up: the pydock tree on stderr, DEBUG only with -D."""
    import logging

    from pydock.cli.main import configure_logging

    tree = logging.getLogger("pydock")
    level, handlers = tree.level, list(tree.handlers)
    try:
        configure_logging(debug=False)
        configure_logging(debug=False)  # again (another in-process main()): still one handler
        logging.getLogger("pydock.links").debug("hidden")
        logging.getLogger("pydock.links").warning("a rule could not be deleted")
        assert capsys.readouterr().err.splitlines() == ["WARNING pydock.links: a rule could not be deleted"]
        configure_logging(debug=True)
        logging.getLogger("pydock.archive").debug("shown with -D")
        assert capsys.readouterr().err == "DEBUG pydock.archive: shown with -D\n"
        assert len(tree.handlers) == len(handlers) + (0 if handlers else 1)
    finally:
        tree.setLevel(level)
        tree.handlers[:] = handlers
