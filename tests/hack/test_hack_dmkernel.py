"""hack/dmkernel.sh: a checkout anywhere (under /tmp too) runs its command in UML, and every failure
says why in one line with a non-zero status instead of panicking the UML kernel.

The `uml` tests boot User-Mode Linux themselves (a few seconds each), so they run in the host tier,
never inside UML (the dm tier selects `-m dm` only), and there are few of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2]
UML = os.environ.get("PYDOCK_UML", "/usr/bin/linux.uml")
MEM = "512M"
PANIC = ("Kernel panic", "Attempted to kill init", "the UML kernel stopped before the command finished")


@pytest.fixture
def uml() -> None:
    if os.environ.get("PYDOCK_IN_UML") == "1":
        pytest.skip("boots User-Mode Linux itself: runs on the host, not inside UML")
    if not os.access(UML, os.X_OK):
        reason = f"{UML} not found (apt-get install user-mode-linux; hack/make.sh test does)"
        if os.environ.get("PYDOCK_STRICT_SKIPS") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def checkout_in_tmp() -> Iterator[Path]:
    """A copy of this checkout's files (as they are now, uncommitted changes too) under /tmp itself,
    whatever TMPDIR says: the place the UML side mounts a fresh tmpfs over."""
    base = Path(tempfile.mkdtemp(prefix="pydock-checkout-", dir="/tmp"))
    dest = base / "pydock"
    try:
        shutil.copytree(SRC, dest, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", ".venv", "bundles", "__pycache__", "*.egg-info",
                                                      ".pytest_cache"))
        yield dest
    finally:
        shutil.rmtree(base, ignore_errors=True)


def dmkernel(checkout: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """`hack/dmkernel.sh ARGS` of `checkout`, run from it."""
    return subprocess.run([str(checkout / "hack/dmkernel.sh"), *args], cwd=checkout, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.mark.uml
def test_a_checkout_under_tmp_runs_its_command_in_uml(uml: None, checkout_in_tmp: Path) -> None:
    """The checkout's own dmkernel.sh, run from it: the command starts in the checkout (bound back over
    the UML side's fresh /tmp), writes reach the host, and /tmp is still UML's own memory."""
    host_only = Path("/tmp") / f"pydock-host-only-{uuid.uuid4().hex[:8]}"
    host_only.touch()
    script = ("pwd; test -x hack/dmkernel.sh && echo checkout-visible; echo from-uml > written-in-uml; "
              f"if [ -e {host_only} ]; then echo tmp-is-host; else echo tmp-is-uml; fi; "
              "grep -q ' /tmp tmpfs ' /proc/mounts && echo tmp-is-tmpfs; exit 7")
    try:
        res = dmkernel(checkout_in_tmp, "-m", MEM, "--", "sh", "-c", script)
    finally:
        host_only.unlink()
    out = res.stdout + res.stderr
    assert res.returncode == 7, out
    lines = res.stdout.splitlines()
    for want in (str(checkout_in_tmp), "checkout-visible", "tmp-is-uml", "tmp-is-tmpfs"):
        assert want in lines, out
    assert (checkout_in_tmp / "written-in-uml").read_text() == "from-uml\n"
    assert not any(p in out for p in PANIC), out


@pytest.mark.uml
def test_a_directory_uml_cannot_see_fails_in_one_line_without_a_panic(uml: None) -> None:
    """The UML side replaces /dev with its own devtmpfs: a directory only the host's /dev has passes the
    host-side check and then fails the `cd` inside, where init must report it and halt cleanly."""
    hidden = Path("/dev") / f"pydock-test-{uuid.uuid4().hex[:8]}"
    hidden.mkdir()
    try:
        res = dmkernel(SRC, "-m", MEM, "-C", str(hidden), "--", "echo", "should-not-run")
    finally:
        hidden.rmdir()
    out = res.stdout + res.stderr
    assert res.returncode == 125, out
    assert f"dmkernel: cannot cd to {hidden} inside User-Mode Linux\n" in out, out
    assert "should-not-run" not in out
    assert not any(p in out for p in PANIC), out


@pytest.mark.uml
def test_a_missing_command_fails_in_one_line_with_127(uml: None) -> None:
    res = dmkernel(SRC, "-m", MEM, "--", "pydock-no-such-command", "arg")
    out = res.stdout + res.stderr
    assert res.returncode == 127, out
    assert "dmkernel: pydock-no-such-command: command not found inside User-Mode Linux\n" in out, out
    assert not any(p in out for p in PANIC), out


def test_a_missing_directory_fails_on_the_host_before_booting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    res = dmkernel(SRC, "-C", str(missing), "--", "true", timeout=10)
    assert res.returncode == 125
    assert res.stderr == f"dmkernel: cannot cd to {missing}: no such directory\n"
    assert res.stdout == ""


@pytest.mark.uml
def test_vector_registers_survive_task_switches_in_uml(uml: None, tmp_path: Path) -> None:
    """UML 6.1 saves 832 bytes of each process's vector state; on a host with AVX-512 or AMX it used to
    panic at its first process switch, and a process keeping only that part was corrupted (glibc's
    own string functions use zmm16-31). A probe holds distinct values in the widest vector register
    in six threads of two processes, across yields, and reads them back."""
    probe = tmp_path / "vector-probe"
    source = Path(__file__).with_name("vector_probe.c")
    subprocess.run(["gcc", "-O2", "-static", "-pthread", "-o", str(probe), str(source)], check=True, capture_output=True)
    res = dmkernel(SRC, "-m", MEM, "-C", str(tmp_path), "--", "./vector-probe")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert res.stdout.splitlines()[-1] in ("zmm registers kept", "ymm registers kept", "xmm registers kept"), out
    assert not any(p in out for p in PANIC), out


@pytest.mark.uml
def test_it_runs_without_home_in_the_environment(uml: None) -> None:
    """UML keeps its control files under $HOME and panicked without one (as from a bare `env -i`)."""
    env = {k: v for k, v in os.environ.items() if k != "HOME"}
    res = subprocess.run([str(SRC / "hack/dmkernel.sh"), "-m", MEM, "--", "sh", "-c", "echo inside"], cwd=SRC,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and res.stdout.splitlines()[-1] == "inside", out
    assert not any(p in out for p in PANIC), out
