"""`--log-driver json-file|none` and `--log-opt max-size/max-file`: what is kept, rotated and read back,
and what is refused, as under Docker."""

from __future__ import annotations

import json
import os

import pytest

from pydock.runtime.jsonlog import JsonLog, LogReader
from pydock.runtime.options import CreateOptions, parse_log_config
from pydock.utils.errors import InvalidArgument

pytestmark = pytest.mark.lxc


@pytest.mark.parametrize("driver, opts, message", [
    ("syslog", [], "logger: no log driver named 'syslog' is registered"),
    ("json-file", ["frob=1"], "unknown log opt 'frob' for json-file log driver"),
    ("none", ["max-size=1k"], "unknown log opt 'max-size' for none log driver"),
    ("json-file", ["max-file=3"], "max-file cannot be used without max-size"),
    ("json-file", ["max-size=0"], "max-size must be a positive number"),
    ("json-file", ["max-size=1k", "max-file=0"], "max-file cannot be less than 1"),
    ("json-file", ["max-size=lots"], "invalid size: 'lots'"),
    ("json-file", ["compress=true"], "log opt 'compress' of the json-file log driver is not supported"),
])
def test_bad_log_configs_are_refused_with_dockers_messages(driver, opts, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_log_config(driver, opts)


def test_sizes_are_decimal_like_dockers():
    assert parse_log_config(None, ["max-size=10k", "max-file=2"]) == \
        {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "2"}}
    from pydock.runtime.options import log_max_size
    assert [log_max_size({"max-size": s}) for s in ("10k", "1m", "2g", "512", "1.5kb")] == \
        [10_000, 1_000_000, 2_000_000_000, 512, 1500]


def _lines(n: int) -> list[bytes]:
    return [f"line {i:04d}\n".encode() for i in range(n)]


def test_rotation_keeps_max_file_files_and_one_reader_follows_them(tmp_path):
    """Docker's order: the live file, then .1 (newest rotated) ... ; a reader opened before the
    rotations and one opened after both see every kept line once, in order."""
    path = tmp_path / "c-json.log"
    writer = JsonLog(path, max_size=400, max_files=3)
    follower = LogReader(path)
    seen: list[str] = []
    for i, line in enumerate(_lines(100)):
        writer.feed("stdout", line)
        if i % 9 == 0:
            seen += [r.log for r in follower.read()]
    writer.close()
    seen += [r.log for r in follower.read()]
    assert seen == [line.decode() for line in _lines(100)]
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    for name in ("c-json.log.1", "c-json.log.2"):  # rotated once full: at least max-size, one record past it at most
        assert 400 <= os.path.getsize(tmp_path / name) < 400 + 100
    kept = [r.log for r in LogReader(path).read()]
    assert kept == [line.decode() for line in _lines(100)][-len(kept):] and 10 < len(kept) < 30
    with open(tmp_path / "c-json.log.2") as f:
        assert json.loads(f.readline())["log"] == kept[0]


def test_max_file_one_empties_the_log_in_place(tmp_path):
    path = tmp_path / "c-json.log"
    writer = JsonLog(path, max_size=200, max_files=1)
    follower = LogReader(path)
    seen = []
    for line in _lines(30):
        writer.feed("stdout", line)
        seen += [r.log for r in follower.read()]
    assert seen == [line.decode() for line in _lines(30)]
    assert os.listdir(tmp_path) == ["c-json.log"] and os.path.getsize(path) < 300


def test_json_file_rotation_in_a_container(rt):
    c = rt.create(CreateOptions.of("busybox", ["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line $i; "
                                               "i=$((i+1)); done"],
                                   network=False, log_opts=("max-size=2k", "max-file=3")))
    assert c.hostconfig["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "2k", "max-file": "3"}}
    assert rt.run_created(c).exit_code == 0
    names = sorted(p.name for p in c.dir.iterdir() if p.name.startswith(f"{c.id}-json.log"))
    assert names == [f"{c.id}-json.log", f"{c.id}-json.log.1", f"{c.id}-json.log.2"]
    lines = [r.log for r in rt.logs(c)]
    assert lines[-1] == "line 299\n" and 40 < len(lines) < 300
    assert lines == [f"line {i}\n" for i in range(300 - len(lines), 300)]


def test_none_keeps_no_log_and_logs_fails(rt):
    c = rt.create(CreateOptions.of("busybox", ["echo", "hi"], network=False, log_driver="none"))
    code, out, _err = rt.run_created(c)
    assert (code, out) == (0, b"hi\n")  # a foreground run still shows its output
    assert not any(p.name.startswith(f"{c.id}-json.log") for p in c.dir.iterdir())
    with pytest.raises(InvalidArgument, match="^configured logging driver does not support reading$"):
        rt.logs(c)


def test_cli_log_options(cli):
    p = cli("run", "--net", "none", "--log-driver", "none", "--name", "quiet", "busybox", "echo", "shown")
    assert (p.returncode, p.stdout) == (0, b"shown\n")
    p = cli("logs", "quiet")
    assert p.returncode != 0 and p.stderr == b"Error: configured logging driver does not support reading\n"
    hc = json.loads(cli("inspect", "quiet").stdout)[0]["HostConfig"]
    assert hc["LogConfig"] == {"Type": "none", "Config": {}}
    p = cli("run", "--log-driver", "gelf", "busybox", "true")
    assert p.returncode == 125 and b"logger: no log driver named 'gelf' is registered" in p.stderr
    p = cli("run", "--log-opt", "max-file=2", "busybox", "true")
    assert p.returncode == 125 and b"max-file cannot be used without max-size" in p.stderr
    assert len(cli("ps", "-a", "-q").stdout.split()) == 1  # the refused ones left nothing
    p = cli("run", "-d", "--net", "none", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox", "sh",
            "-c", "i=0; while [ $i -lt 200 ]; do echo row $i; i=$((i+1)); done")
    cid = p.stdout.decode().strip()
    assert cli("wait", cid).stdout == b"0\n"
    out = cli("logs", cid).stdout.decode().splitlines()
    assert out[-1] == "row 199" and out == [f"row {i}" for i in range(200 - len(out), 200)] and len(out) < 200
