"""`hack/make.sh deb`: the Debian package's control fields, file list, dependencies and a throw-away install.

The install test uses `dpkg --root <tmp>` on an empty dpkg database: dpkg really unpacks, records and
removes the package there, without touching the machine. Its Depends cannot be met inside an empty
root, so that step forces them, and a separate test proves apt resolves them against Debian's own
archive (`apt-get -s install ./pydock.deb`). Only in CI (CI=true) is the package installed on the
machine itself and used to run a container.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from netns_helpers import in_netns_argv
from packaging_helpers import IMPORT_ALL

from pydock.utils.version import VERSION

SRC = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
DEPENDS = ["python3 (>= 3.11)", "python3-click (>= 8.0)", "python3-tabulate (>= 0.8)", "python3-pyroute2 (>= 0.7)",
           "python3-prctl (>= 1.7)", "lxc", "iptables", "e2fsprogs", "util-linux", "procps", "tar",
           "xz-utils", "busybox-static", "tini"]
DIST = "usr/lib/python3/dist-packages/pydock"
pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYDOCK", "VIRTUAL_ENV", "_PYDOCK"))}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    res = subprocess.run([str(SRC / "hack/make.sh"), "deb"], env={**os.environ, "PYDOCK_BUNDLES": str(out)},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    path = out / VERSION / "deb" / f"pydock_{VERSION}_all.deb"
    assert path.is_file()
    return path


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def contents(deb: Path) -> dict[str, str]:
    """path -> `mode owner` from `dpkg-deb -c`."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        rows[parts[5].split(" -> ")[0].removeprefix("./").rstrip("/")] = f"{parts[0]} {parts[1]}"
    return rows


def test_deb_control_fields(deb: Path) -> None:
    assert field(deb, "Package") == "pydock"
    assert field(deb, "Version") == VERSION
    assert field(deb, "Architecture") == "all"
    assert [d.strip() for d in field(deb, "Depends").split(",")] == DEPENDS
    assert field(deb, "Recommends") == ""  # user-mode-linux is for the test tier only
    assert int(field(deb, "Installed-Size")) > 0
    assert field(deb, "Maintainer")


def test_deb_file_list(deb: Path) -> None:
    files = contents(deb)
    assert files["usr/bin/pydock"] == "-rwxr-xr-x root/root"
    assert files["usr/libexec/pydock/dockerinit"] == "-rwxr-xr-x root/root"
    for path in ("cli/main.py", "utils/buildinfo.py", "dockerinit/locate.py", "utils/mount.py"):
        assert files[f"{DIST}/{path}"] == "-rw-r--r-- root/root", path
    for path in ("usr/share/man/man1/pydock.1.gz", "usr/share/bash-completion/completions/pydock",
                 "usr/share/doc/pydock/copyright", "usr/share/doc/pydock/changelog.Debian.gz",
                 "lib/systemd/system/pydock.service"):
        assert path in files, path
    assert not [p for p in files if p.endswith(".pyc") or "__pycache__" in p], "py3compile makes those on install"
    assert not [p for p in files if "/click/" in p or "/pyroute2/" in p], "Debian's own packages provide those"
    assert all(owner.endswith("root/root") for owner in files.values())


def test_deb_man_page_and_completion(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    man = gzip.decompress((tmp_path / "usr/share/man/man1/pydock.1.gz").read_bytes()).decode()
    assert man.startswith(".TH PYDOCK 1 ")
    for heading in (".SH NAME", ".SH SYNOPSIS", ".SH GLOBAL OPTIONS", ".SH COMMANDS", ".SH FILES"):
        assert heading in man
    assert '.SS "pydock version' in man
    assert "\\-\\-graph" in man
    if shutil.which("man"):
        rendered = subprocess.run(["man", "-l", str(tmp_path / "usr/share/man/man1/pydock.1.gz")],
                                  env={**os.environ, "MANWIDTH": "80"},
                                  capture_output=True, text=True)
        assert rendered.returncode == 0, rendered.stderr
        assert "--graph" in re.sub(".\x08", "", rendered.stdout)  # drop nroff overstrike (bold)
    completion = (tmp_path / "usr/share/bash-completion/completions/pydock").read_text()
    assert "_PYDOCK_COMPLETE=bash_complete" in completion
    assert "complete " in completion and " pydock" in completion
    # the boot-time unit runs a command the package has: what starts restart-policy containers at boot
    unit = (tmp_path / "lib/systemd/system/pydock.service").read_text()
    assert "ExecStart=/usr/bin/pydock boot\n" in unit and "WantedBy=multi-user.target" in unit
    assert '.SS "pydock boot' in man


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_deb_dependencies_resolve_from_debian(deb: Path) -> None:
    """Every Depends names a package Debian ships, at a version it has (a simulated install, no changes)."""
    res = subprocess.run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "install", str(deb)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Inst pydock ({VERSION}" in res.stdout or f"Inst pydock [{VERSION}]" in res.stdout, res.stdout


def _empty_dpkg_root(root: Path) -> Path:
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"):
        (root / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    return root


def dpkg_root(root: Path, *args: str) -> subprocess.CompletedProcess:
    # --force-script-chrootless: the empty root has no /bin/sh; the maintainer scripts see DPKG_ROOT and skip
    return subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_deb_installs_into_a_throwaway_root_runs_and_removes(deb: Path, tmp_path: Path) -> None:
    root = _empty_dpkg_root(tmp_path / "target")
    res = dpkg_root(root, "--force-depends", "-i", str(deb))
    assert res.returncode == 0, res.stdout + res.stderr
    status = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Status} ${Version}",
                             "pydock"], capture_output=True, text=True)
    assert status.stdout == f"install ok installed {VERSION}"

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # a real install byte-compiles in postinst (py3compile) and cleans in prerm (py3clean); both skip under
    # DPKG_ROOT, so here Python must not write __pycache__ into the package's directories either
    env = clean_env(PYTHONPATH=str(root / "usr/lib/python3/dist-packages"), PYTHONDONTWRITEBYTECODE="1")
    state = tmp_path / "state"
    res = subprocess.run([SYSTEM_PYTHON, str(root / "usr/bin/pydock"), "-g", str(state), "version"], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"Client version: {VERSION}" in res.stdout
    assert "Git commit: unknown" not in res.stdout

    # the installed pydock finds its helper at <prefix>/libexec/pydock/dockerinit and pins a copy
    code = ("import sys; sys.argv[0] = sys.argv[1]\nfrom pathlib import Path\n"
            "from pydock.dockerinit.locate import dockerinit_path\nfrom pydock.utils.paths import RootLayout\n"
            "print(dockerinit_path(RootLayout(Path(sys.argv[2]))))\n")
    res = subprocess.run([SYSTEM_PYTHON, "-c", code, str(root / "usr/bin/pydock"), str(state)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pinned = Path(res.stdout.strip())
    assert pinned == state / "init" / f"dockerinit-{VERSION}"
    assert pinned.read_bytes() == (root / "usr/libexec/pydock/dockerinit").read_bytes()

    res = dpkg_root(root, "-r", "pydock")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (root / "usr").exists()


@pytest.mark.slow
def test_deb_refuses_a_helper_from_another_build(deb: Path, tmp_path: Path) -> None:
    """A dockerinit whose sha256 differs from the one baked into this pydock is never used."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    helper = tmp_path / "x/usr/libexec/pydock/dockerinit"
    helper.write_bytes(helper.read_bytes() + b"\n# tampered\n")
    code = ("import sys; sys.argv[0] = sys.argv[1]\nfrom pathlib import Path\n"
            "from pydock.dockerinit.locate import dockerinit_path\nfrom pydock.utils.paths import RootLayout\n"
            "from pydock.utils.errors import LaunchError\n"
            "try:\n    dockerinit_path(RootLayout(Path(sys.argv[2])))\n"
            "except LaunchError as err:\n    print(err)\n    sys.exit(err.exit_code)\n")
    state = tmp_path / "state"
    res = subprocess.run([SYSTEM_PYTHON, "-c", code, str(tmp_path / "x/usr/bin/pydock"), str(state)],
                         env=clean_env(PYTHONPATH=str(tmp_path / "x/usr/lib/python3/dist-packages"),
                                       PYDOCK_DOCKERINIT=str(helper)),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 125, res.stdout + res.stderr
    assert res.stdout.startswith("Could not locate dockerinit: ")
    assert f"{helper} (sha256 mismatch)" in res.stdout
    assert not (state / "init" / f"dockerinit-{VERSION}").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") != "true", reason="installs on the machine itself: CI only (CI=true)")
def test_deb_installed_on_the_machine_runs_a_container(deb: Path, tmp_path: Path) -> None:
    if subprocess.run(["dpkg-query", "-W", "pydock"], capture_output=True).returncode == 0:
        pytest.fail("a pydock package is already installed on this machine; refusing to replace it")
    res = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, timeout=300)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        argv = in_netns_argv("/usr/bin/pydock", "-g", str(tmp_path / "root"), "run", "--rm", "busybox", "echo",
                             "hi")
        run = subprocess.run(argv, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "hi\n"
        # the boot unit is enabled (to run `pydock boot` at boot), never started by the install
        assert Path("/etc/systemd/system/multi-user.target.wants/pydock.service").is_symlink()
    finally:
        removed = subprocess.run(["dpkg", "--purge", "pydock"], capture_output=True, text=True, timeout=300)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not Path("/usr/bin/pydock").exists()
    # purged: nothing of it left, not even the unit's enablement (the next install starts clean)
    assert subprocess.run(["dpkg-query", "-W", "pydock"], capture_output=True).returncode != 0
    assert not Path("/etc/systemd/system/multi-user.target.wants/pydock.service").is_symlink()


@pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, "-c", "import click, tabulate, pyroute2, prctl"],
                                   capture_output=True).returncode != 0,
                    reason="needs Debian's python3-click python3-tabulate python3-pyroute2 python3-prctl")
def test_deb_imports_every_module_with_debians_own_dependencies(deb: Path, tmp_path: Path) -> None:
    """The Depends versions (bookworm: click 8.1, tabulate 0.8, pyroute2 0.7) must carry every module."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    res = subprocess.run([SYSTEM_PYTHON, "-c", IMPORT_ALL], cwd=tmp_path,
                         env=clean_env(PYTHONPATH=str(tmp_path / "x/usr/lib/python3/dist-packages"),
                                       PYTHONDONTWRITEBYTECODE="1"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
