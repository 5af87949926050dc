"""hack/make.sh's installing: `dev` asks only for what running pydock needs, and no package's postinst
may start a service while make.sh installs (a temporary policy-rc.d answering 101, the machine's own
put back on every way out).

These source hack/make.sh (which then only defines its functions) with a fake `apt-get` and
`dpkg-query` first on PATH and the policy-rc.d path pointed into tmp_path, so nothing is installed
and the machine's /usr/sbin/policy-rc.d is never touched.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2]
MAKE = SRC / "hack/make.sh"
TEST_ONLY = {"user-mode-linux", "dmsetup", "python3-click", "python3-tabulate", "python3-pyroute2",
             "python3-prctl"}

FAKE_APT_GET = r"""#!/bin/sh
# records each call and what the policy answers during it
"$PYDOCK_POLICY_RC_D" docker start >/dev/null 2>&1
echo "apt-get $* => policy $?" >> "$FAKE_LOG"
[ "$1" = update ] && exit 0
if [ -n "${FAKE_APT_SLEEP:-}" ]; then
    echo $$ > "$FAKE_LOG.installing"  # a builtin: no child a Ctrl-C could miss (see the test)
    exec sleep "$FAKE_APT_SLEEP"
fi
exit "${FAKE_APT_STATUS:-0}"
"""
FAKE_DPKG_QUERY = r"""#!/bin/sh
# dpkg-query -W -f=FORMAT PKG...: every package is installed but those named in $FAKE_MISSING ("all": none)
shift 2
for p in "$@"; do
    case " $FAKE_MISSING " in
        *" $p "* | *" all "*) echo "$p unknown ok not-installed" ;;
        *) echo "$p install ok installed" ;;
    esac
done
"""
ORIGINAL_POLICY = b"#!/bin/sh\n# the machine's own policy\nexit 0\n"


class Fake:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name, text in (("apt-get", FAKE_APT_GET), ("dpkg-query", FAKE_DPKG_QUERY)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.policy = tmp_path / "policy-rc.d"
        self.saved = tmp_path / "policy-rc.d.pydock-saved"
        self.log = tmp_path / "apt.log"
        # a venv whose stamp matches: pip_install does nothing
        venv = tmp_path / "venv"
        (venv / "bin").mkdir(parents=True)
        for name in ("python", "pydock"):
            (venv / "bin" / name).write_text("#!/bin/sh\nexit 99\n")
            (venv / "bin" / name).chmod(0o755)
        digest = hashlib.sha256((SRC / "pyproject.toml").read_bytes()).hexdigest()
        (venv / ".pydock-pip-dev").write_text(f"{SRC} {digest}\n")
        self.env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "PYDOCK_POLICY_RC_D": str(self.policy),
                    "PYDOCK_MAKE_LOCK": str(tmp_path / "make.lock"), "PYDOCK_VENV": str(venv),
                    "FAKE_LOG": str(self.log), "FAKE_MISSING": ""}

    def argv(self, script: str) -> list[str]:
        return ["bash", "-c", f"source {MAKE}; {script}"]

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(script), env={**self.env, **env}, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def with_original_policy(self) -> None:
        self.policy.write_bytes(ORIGINAL_POLICY)
        self.policy.chmod(0o750)

    def assert_original_policy_back(self) -> None:
        assert self.policy.read_bytes() == ORIGINAL_POLICY
        assert self.policy.stat().st_mode & 0o777 == 0o750
        assert not self.saved.exists()
        assert not Path(f"{self.policy}.tmp").exists()


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def sourced(expr: str) -> str:
    """What `echo EXPR` prints after sourcing hack/make.sh."""
    res = subprocess.run(["bash", "-c", f"source {MAKE}; echo {expr}"], capture_output=True, text=True, check=True)
    return res.stdout.strip()


def packages(var: str) -> set[str]:
    return set(sourced(f"${var}").split())


def test_dev_packages_are_what_pydock_runs_on_and_builds_with() -> None:
    run = packages("RUN_PACKAGES")
    assert {"lxc", "iptables", "e2fsprogs", "util-linux", "busybox-static", "xz-utils", "bzip2", "iproute2", "procps",
            "python3-venv", "gcc", "libcap-dev"} <= run
    assert not run & TEST_ONLY, "test-only packages belong to hack/make.sh test"
    assert TEST_ONLY <= packages("TEST_PACKAGES")
    assert "docker.io" not in packages("RUN_PACKAGES") | packages("TEST_PACKAGES")  # it would enable dockerd at boot


def test_dev_installs_only_the_missing_runtime_packages(fake: Fake) -> None:
    res = fake.run("bundle_dev", FAKE_MISSING="all")
    assert res.returncode == 0, res.stderr
    install = [c for c in fake.calls() if c.startswith("apt-get install")]
    assert len(install) == 1
    asked = set(install[0].split(" => ")[0].split()[2:]) - {"-y", "-qq", "--no-install-recommends"}
    assert asked == packages("RUN_PACKAGES")
    fake.log.unlink()
    res = fake.run("bundle_dev", FAKE_MISSING="lxc")
    assert res.returncode == 0, res.stderr
    assert fake.calls() == ["apt-get update -qq => policy 101",
                            "apt-get install -y -qq --no-install-recommends lxc => policy 101"]


def test_dev_with_everything_present_runs_no_apt_and_no_pip(fake: Fake) -> None:
    started = time.monotonic()
    res = fake.run("bundle_dev")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert fake.calls() == []
    assert time.monotonic() - started < 5


def test_install_forbids_services_then_puts_the_machines_policy_back(fake: Fake) -> None:
    fake.with_original_policy()
    res = fake.run("apt_install pkg-a pkg-b")
    assert res.returncode == 0, res.stderr
    assert fake.calls() == ["apt-get update -qq => policy 101",
                            "apt-get install -y -qq --no-install-recommends pkg-a pkg-b => policy 101"]
    fake.assert_original_policy_back()


def test_install_on_a_machine_without_a_policy_leaves_none(fake: Fake) -> None:
    res = fake.run("apt_install pkg-a")
    assert res.returncode == 0, res.stderr
    assert fake.calls()[-1].endswith("=> policy 101")
    assert not fake.policy.exists()
    assert not fake.saved.exists()


def test_a_failed_install_fails_and_still_puts_the_policy_back(fake: Fake) -> None:
    fake.with_original_policy()
    res = fake.run("apt_install pkg-a; echo not-reached", FAKE_APT_STATUS="100")
    assert res.returncode == 100
    assert "not-reached" not in res.stdout
    fake.assert_original_policy_back()


def _comm_is(pid: str, name: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_install_puts_the_policy_back(fake: Fake, sig: signal.Signals) -> None:
    fake.with_original_policy()
    # a terminal's foreground job has SIGINT at its default even when this suite runs in the background
    proc = subprocess.Popen(fake.argv("apt_install pkg-a"), env={**fake.env, "FAKE_APT_SLEEP": "30"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 20
        marker = Path(f"{fake.log}.installing")
        # wait until the fake apt-get *is* sleep: a signal that came while its shell waited for another
        # child would be taken as handled by that child, and the shell would go on to sleep for real
        while not marker.exists() or not _comm_is(marker.read_text().strip(), "sleep"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fake apt-get never started"
            time.sleep(0.02)
        assert b"exit 101" in fake.policy.read_bytes()
        os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does: the whole foreground group
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    deadline = time.monotonic() + 10  # the subshell may finish its EXIT trap just after its parent died
    while fake.saved.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    fake.assert_original_policy_back()


def test_a_run_killed_outright_is_repaired_by_the_next(fake: Fake) -> None:
    """SIGKILL runs no trap: ours stays in place with the machine's beside it; the next run puts it back."""
    fake.saved.write_bytes(ORIGINAL_POLICY)
    fake.saved.chmod(0o750)
    mark = sourced('"$POLICY_MARK"')
    fake.policy.write_text(f"#!/bin/sh\n{mark}\nexit 101\n")
    res = fake.run("apt_install pkg-a")
    assert res.returncode == 0, res.stderr
    assert fake.calls()[-1].endswith("=> policy 101")
    fake.assert_original_policy_back()


def test_a_foreign_policy_next_to_a_leftover_is_not_guessed_at(fake: Fake) -> None:
    fake.with_original_policy()
    fake.saved.write_bytes(b"#!/bin/sh\nexit 0\n")
    res = fake.run("apt_install pkg-a")
    assert res.returncode != 0
    assert "keep the right one and delete the other" in res.stderr
    assert fake.calls() == []
    assert fake.policy.read_bytes() == ORIGINAL_POLICY
    assert fake.saved.read_bytes() == b"#!/bin/sh\nexit 0\n"



def test_a_dangling_symlink_policy_is_the_machines_too(fake: Fake) -> None:
    fake.policy.symlink_to(fake.policy.parent / "nowhere")
    res = fake.run("apt_install pkg-a")
    assert res.returncode == 0, res.stderr
    assert fake.calls()[-1].endswith("=> policy 101")
    assert os.readlink(fake.policy) == str(fake.policy.parent / "nowhere")
    assert not fake.saved.exists() and not fake.saved.is_symlink()


def test_the_docker_cli_is_taken_out_of_docker_io_without_installing_the_package(fake: Fake, tmp_path: Path) -> None:
    """No `docker` on PATH: only the client binary of Debian's docker.io lands in the venv."""
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text("Package: docker.io\nVersion: 1\nArchitecture: all\n"
                                            "Maintainer: t <t@t>\nDescription: fake\n")
    for rel, text in (("usr/bin/docker", "#!/bin/sh\necho fake docker client\n"), ("usr/sbin/dockerd", "#!/bin/sh\n")):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
        (pkg / rel).chmod(0o755)
    deb = tmp_path / "docker.io_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    (fake.bin / "apt-get").write_text(f"#!/bin/sh\necho \"apt-get $*\" >> \"$FAKE_LOG\"\n"
                                      f"[ \"$1\" = download ] && cp {deb} .\nexit 0\n")
    env = {"PATH": f"{fake.bin}:/usr/sbin:/usr/bin:/sbin:/bin"}  # no docker on it
    res = fake.run("ensure_docker_cli", **env)
    assert res.returncode == 0, res.stderr
    venv_bin = Path(fake.env["PYDOCK_VENV"]) / "bin"
    client = subprocess.run([str(venv_bin / "docker")], capture_output=True, text=True)
    assert client.stdout == "fake docker client\n"
    assert not (venv_bin / "dockerd").exists()
    assert [c for c in fake.calls() if "install" in c] == []  # nothing installed system-wide
    fake.log.unlink()
    assert fake.run("ensure_docker_cli", **env).returncode == 0 and fake.calls() == []  # there already


def test_the_summary_repeats_each_tiers_failures_at_the_end_of_the_log(tmp_path: Path) -> None:
    """CI shows a log's end: the summary names the failed tests even from a coloured pytest log."""
    log = tmp_path / "host.log"
    log.write_text("tests/a.py::t PASSED\n"
                   "\x1b[31mFAILED\x1b[0m tests/a.py::u - AssertionError: boom\n"
                   "ERROR tests/b.py::v - OSError\n"
                   "\x1b[31m===== 1 failed, 1 passed, 1 error in 12.50s =====\x1b[0m\n")
    out = subprocess.run(["bash", "-c", f'source "{MAKE}"; summarize_tier host "$1" 1', "-", str(log)],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["host tier: exit 1",
                                "FAILED tests/a.py::u - AssertionError: boom",
                                "ERROR tests/b.py::v - OSError",
                                "===== 1 failed, 1 passed, 1 error in 12.50s ====="]
