"""`hack/make.sh binary`: one executable zip that runs every command with only the system's python3.

Each test runs the built file the way a user would: /usr/bin/python3 (Debian's), PYTHONPATH unset,
from a directory that holds no checkout and no virtualenv, with its own `-g` root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from netns_helpers import in_netns_argv
from packaging_helpers import IMPORT_ALL

from pydock.utils.version import VERSION

SRC = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs the distro's /usr/bin/python3")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user with no checkout: no PYTHON*/PYDOCK*/VIRTUAL_ENV, a system PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYDOCK", "VIRTUAL_ENV", "_PYDOCK"))}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.update(extra)
    return env


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(SRC), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


BUILT_FROM: set[str] = set()  # HEAD before and after the build (others may commit meanwhile)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bundles/<version>/binary built by `hack/make.sh binary` into a private bundles dir."""
    out = tmp_path_factory.mktemp("bundles")
    BUILT_FROM.add(head_commit())
    res = subprocess.run([str(SRC / "hack/make.sh"), "binary"], env={**os.environ, "PYDOCK_BUNDLES": str(out)},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    BUILT_FROM.add(head_commit())
    return out / VERSION / "binary"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory with no checkout in it."""
    d = tmp_path / "cwd"
    d.mkdir()
    return d


def run_binary(binary: Path, cwd: Path, *args: str, python: list[str] | None = None, timeout: int = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [*(python or []), str(binary), *args]
    return subprocess.run(argv, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)


def test_binary_is_one_executable_zip_with_the_system_python_shebang(bundle: Path) -> None:
    binary = bundle / f"pydock-{VERSION}"
    assert os.readlink(bundle / "pydock") == binary.name
    assert binary.stat().st_mode & stat.S_IXUSR
    assert binary.read_bytes().startswith(b"#!/usr/bin/python3\n")
    with zipfile.ZipFile(binary) as zf:
        names = set(zf.namelist())
    assert "__main__.py" in names
    for module in ("pydock/cli/main.py", "pydock/utils/buildinfo.py", "pydock/dockerinit/locate.py",
                   "click/__init__.py", "tabulate/__init__.py", "pyroute2/__init__.py", "pydock-dockerinit"):
        assert module in names, module
    assert "pydock/cli/main.pyc" in names  # precompiled: zipimport cannot write __pycache__
    assert not [n for n in names if n.endswith((".so", ".pyd"))], "a zipapp cannot carry compiled extensions"
    assert not [n for n in names if "__pycache__" in n]


def test_binary_version_reports_the_baked_in_commit_without_site_packages(bundle: Path, elsewhere: Path,
                                                                          tmp_path: Path) -> None:
    # -S: no site-packages at all, so click/tabulate can only come from inside the zip
    res = run_binary(bundle / "pydock", elsewhere, "-g", str(tmp_path / "root"), "version",
                     python=[SYSTEM_PYTHON, "-S"])
    assert res.returncode == 0, res.stderr
    assert f"Client version: {VERSION}" in res.stdout
    commit = res.stdout.split("Git commit: ", 1)[1].split()[0].removesuffix("-dirty")
    assert commit in BUILT_FROM  # from utils/buildinfo.py: the cwd has no checkout to ask git
    assert "Python version: 3." in res.stdout


def test_binary_runs_by_its_shebang(bundle: Path, elsewhere: Path, tmp_path: Path) -> None:
    res = run_binary(bundle / "pydock", elsewhere, "-g", str(tmp_path / "root"), "version")
    assert res.returncode == 0, res.stderr
    assert f"Client version: {VERSION}" in res.stdout


def test_binary_bash_completion_lists_commands(bundle: Path, elsewhere: Path) -> None:
    res = run_binary(bundle / "pydock", elsewhere,
                     env=clean_env(_PYDOCK_COMPLETE="bash_complete", COMP_WORDS="pydock vers", COMP_CWORD="1"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["plain,version"]


def test_binary_info_reports_driver_and_kernel_features(bundle: Path, elsewhere: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    res = run_binary(bundle / "pydock", elsewhere, "-g", str(root), "info")
    assert res.returncode == 0, res.stderr
    assert f"Root Dir: {root}" in res.stdout
    assert "Storage Driver: " in res.stdout
    assert "Kernel features:" in res.stdout


def test_binary_pins_its_embedded_dockerinit_by_sha256(bundle: Path, elsewhere: Path, tmp_path: Path) -> None:
    """Run from the zip, the lookup takes the helper inside it, checks it and copies it to <root>/init (0700)."""
    root = tmp_path / "root"
    lone = tmp_path / "lone"  # the binary alone: no dockerinit beside it
    lone.mkdir()
    shutil.copy2(bundle / f"pydock-{VERSION}", lone / "pydock")
    code = ("import sys; from pathlib import Path\n"
            "from pydock.dockerinit.locate import dockerinit_path\n"
            "from pydock.utils.paths import RootLayout\n"
            "print(dockerinit_path(RootLayout(Path(sys.argv[1]))))\n")
    res = subprocess.run([SYSTEM_PYTHON, "-c", f"import sys; sys.path.insert(0, {str(lone / 'pydock')!r})\n" + code,
                          str(root)], cwd=elsewhere, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pinned = Path(res.stdout.strip())
    assert pinned == root / "init" / f"dockerinit-{VERSION}"
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o700
    assert pinned.read_bytes() == (bundle / f"dockerinit-{VERSION}").read_bytes()
    sums = dict(reversed(line.split()) for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert hashlib.sha256(pinned.read_bytes()).hexdigest() == sums[f"dockerinit-{VERSION}"]


def test_binary_replaces_a_stale_pinned_helper_without_touching_the_old_file(bundle: Path, elsewhere: Path,
                                                                             tmp_path: Path) -> None:
    """An older helper pinned under the same version (another build) is replaced by rename, never rewritten."""
    root = tmp_path / "root"
    pinned = root / "init" / f"dockerinit-{VERSION}"
    pinned.parent.mkdir(parents=True)
    pinned.write_bytes(b"#!/bin/sh\necho stale helper\n")
    in_use = tmp_path / "in-use"
    os.link(pinned, in_use)  # what a running container still holds
    code = (f"import sys; sys.path.insert(0, {str(bundle / f'pydock-{VERSION}')!r})\n"
            "from pathlib import Path\nfrom pydock.dockerinit.locate import dockerinit_path\n"
            "from pydock.utils.paths import RootLayout\n"
            f"print(dockerinit_path(RootLayout(Path({str(root)!r}))))\n")
    res = subprocess.run([SYSTEM_PYTHON, "-c", code], cwd=elsewhere, env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert pinned.read_bytes() == (bundle / f"dockerinit-{VERSION}").read_bytes()
    assert in_use.read_bytes() == b"#!/bin/sh\necho stale helper\n"
    assert sorted(p.name for p in pinned.parent.iterdir()) == [pinned.name]  # no temp files left


def test_binary_helper_runs_pydock_dockerinit(bundle: Path, elsewhere: Path) -> None:
    """The helper is `python3 -m pydock.dockerinit` as one file: invoked by hand it refuses, like Docker's."""
    res = run_binary(bundle / "dockerinit", elsewhere)
    assert res.returncode != 0
    assert "No module named" not in res.stderr, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert "dockerinit" in (res.stdout + res.stderr)


def test_binary_helper_is_isolated_and_carries_only_its_own_modules(bundle: Path, elsewhere: Path,
                                                                    tmp_path: Path) -> None:
    """The helper runs as root before every launch, in Python's isolated mode: a module on PYTHONPATH that
    shadows the standard library never runs in it. Its zip holds only the modules its launch imports."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    ran = tmp_path / "ran"
    (shadow / "signal.py").write_text(f"open({str(ran)!r}, 'w').close()\nraise SystemExit(9)\n")
    res = subprocess.run([str(bundle / "dockerinit"), "--", "/bin/echo", "launched"], cwd=elsewhere,
                         env=clean_env(PYTHONPATH=str(shadow)), capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout) == (0, "launched\n"), res.stderr
    assert not ran.exists()
    names = zipfile.ZipFile(bundle / "dockerinit").namelist()
    assert {"pydock/dockerinit/__main__.pyc", "pydock/dockerinit/preexec.pyc", "pydock/utils/mount.pyc"} <= set(names)
    assert [n for n in names if n.startswith(("pydock/cli/", "pydock/runtime/", "click/", "pyroute2/"))] == []


@pytest.mark.lxc
@pytest.mark.slow
def test_binary_runs_a_container_without_networking(bundle: Path, elsewhere: Path, tmp_path: Path) -> None:
    """The lone binary launches through lxc with only the system python (and its exit status comes back)."""
    root = tmp_path / "root"
    res = run_binary(bundle / "pydock", elsewhere, "-g", str(root), "run", "--rm", "--net", "none", "busybox",
                     "sh", "-c", "echo hi; exit 3", timeout=180)
    assert (res.returncode, res.stdout) == (3, "hi\n"), res.stderr
    ps = run_binary(bundle / "pydock", elsewhere, "-g", str(root), "ps", "-a", "-q")
    assert (ps.returncode, ps.stdout.strip()) == (0, ""), ps.stderr
    # a packaged build launches through its identity-checked helper, pinned under the root
    pinned = root / "init" / f"dockerinit-{VERSION}"
    sums = dict(reversed(line.split()) for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert hashlib.sha256(pinned.read_bytes()).hexdigest() == sums[f"dockerinit-{VERSION}"]


@pytest.mark.lxc
@pytest.mark.slow
def test_binary_runs_a_container(bundle: Path, elsewhere: Path, tmp_path: Path) -> None:
    """`pydock run --rm busybox echo hi` from the lone binary, inside a network namespace of its own."""
    root = tmp_path / "root"
    argv = in_netns_argv(str(bundle / "pydock"), "-g", str(root), "run", "--rm", "busybox", "echo", "hi")
    res = subprocess.run(argv, cwd=elsewhere, env=clean_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hi\n"
    ps = run_binary(bundle / "pydock", elsewhere, "-g", str(root), "ps", "-a", "-q")
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.strip() == ""  # --rm removed it


def test_binary_imports_every_module_with_the_system_python(bundle: Path, elsewhere: Path) -> None:
    res = subprocess.run([SYSTEM_PYTHON, "-c", IMPORT_ALL, str(bundle / f"pydock-{VERSION}")], cwd=elsewhere,
                         env=clean_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_binary_replaced_under_a_running_pydock_keeps_serving_its_own_code(bundle: Path, elsewhere: Path,
                                                                          tmp_path: Path) -> None:
    """An upgrade renames a new binary over the old path; a running pydock (e.g. a detached monitor)
    still imports lazily, and must get its own build's modules, not bytes at stale offsets of the new file."""
    binary = tmp_path / "pydock"
    shutil.copy2(bundle / f"pydock-{VERSION}", binary)
    old = binary.read_bytes()
    shebang = b"#!/usr/bin/python3\n"
    assert old.startswith(shebang)
    upgrade = tmp_path / "pydock.new"  # another build: every zip offset moved by a longer shebang
    upgrade.write_bytes(b"#!/usr/bin/python3.11\n" + old[len(shebang):])
    driver = ("import os, runpy, sys\n"
              "binary, root, upgrade = sys.argv[1:4]\n"
              "sys.argv = [binary, '-g', root, 'version']\n"
              "try:\n    runpy.run_path(binary, run_name='__main__')\n"
              "except SystemExit as e:\n    assert not e.code, e.code\n"
              "os.replace(upgrade, binary)\n"
              "import pydock.cli.containers, pydock.runtime.launcher\n"
              "print('lazy import ok from', pydock.runtime.launcher.__file__)\n")
    res = subprocess.run([SYSTEM_PYTHON, "-c", driver, str(binary), str(tmp_path / "root"), str(upgrade)],
                         cwd=elsewhere, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "lazy import ok from /proc/self/fd/" in res.stdout
