"""The pytest plugin as an outside suite sees it: 20 container tests on one shared store, prefixed
per test, cleaned up even when a test fails half-way, nothing left behind."""

from __future__ import annotations

import os
import stat
import shutil
from pathlib import Path

import pytest

from pydock.runtime.testing import leaks

pytest_plugins = ["pytester"]

SAMPLE_SUITE = '''
import pytest

@pytest.mark.parametrize("n", range(20))
def test_container(pydock_runtime, n):
    code, out, err = pydock_runtime.run("busybox", ["sh", "-c", f"echo hi-{n}; echo err-{n} >&2; exit {n % 3}"])
    assert code == n % 3
    assert out == f"hi-{n}\\n".encode()
    assert err == f"err-{n}\\n".encode()

def test_raises_while_a_container_runs(pydock_runtime):
    c = pydock_runtime.create("busybox", ["sleep", "30"])
    pydock_runtime.start(c)
    raise RuntimeError("boom in the middle of a test")
'''

DRIVERS = [pytest.param("overlay", marks=pytest.mark.lxc),
           pytest.param("devicemapper", marks=[pytest.mark.dm, pytest.mark.lxc])]


def _counting_mkfs(bin_dir: Path, log: Path) -> None:
    """A mkfs.ext4 first on PATH that records each call and runs the real one: counts real formats."""
    real = shutil.which("mkfs.ext4")
    assert real, "mkfs.ext4 missing"
    wrapper = bin_dir / "mkfs.ext4"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)


@pytest.mark.slow
@pytest.mark.parametrize("driver", DRIVERS)
def test_twenty_tests_share_one_store_and_leave_nothing(pytester: pytest.Pytester, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mkfs_log = tmp_path / "mkfs.log"
    _counting_mkfs(bin_dir, mkfs_log)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    pytester.makepyfile(test_sample=SAMPLE_SUITE)
    before = leaks.snapshot()

    result = pytester.runpytest_subprocess("-p", "pydock", "--pydock-driver", driver, "-p", "no:cacheprovider",
                                           timeout=600)

    result.assert_outcomes(passed=20, failed=1)
    result.stdout.fnmatch_lines([
        "*boom in the middle of a test*",
        f"pydock: shared {driver} store: 21 test runtimes, busybox built 1x*",
    ])
    formats = mkfs_log.read_text().splitlines() if mkfs_log.exists() else []
    assert len(formats) == (1 if driver == "devicemapper" else 0), formats
    assert "left behind" not in result.stdout.str()
    assert leaks.snapshot().leaks_since(before) == {}


def test_plugin_is_inert_for_suites_that_do_not_use_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "pydock:" not in result.stdout.str()


def _readme_example() -> str:
    """The plugin example from the README, as the user would copy it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("    # test_web.py")
    block = []
    for line in readme[start:].splitlines():
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


@pytest.mark.lxc
def test_readme_plugin_example_passes_as_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_web=_readme_example())
    result = pytester.runpytest_subprocess("-p", "pydock", "--pydock-driver", "overlay", "-p", "no:cacheprovider",
                                           timeout=300)
    result.assert_outcomes(passed=2)


@pytest.mark.lxc
def test_readme_runtime_example_runs(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index('    with Runtime("/tmp/rt"')
    code = "\n".join(line[4:] for line in readme[start:].split("\n\n")[0].splitlines())
    code = code.replace('"/tmp/rt"', repr(str(tmp_path / "rt")))
    from pydock.runtime import Runtime

    exec(compile(code, "README.md", "exec"), {"Runtime": Runtime})
