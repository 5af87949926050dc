"""Restart policies without a daemon: a detached container's monitor runs the command again with
Docker's back-off while the policy asks (on-failure up to N times, always), a user's stop or kill ends
that, a foreground run or --rm with a policy is refused."""

from __future__ import annotations

import time

import pytest

from pydock.runtime import monitorlock
from pydock.runtime.restart import Backoff, RestartPolicy
from pydock.runtime.state import Status
from pydock.utils.errors import InvalidArgument

pytestmark = pytest.mark.lxc


def _settled(rt, c, timeout: float = 60):
    """The container once its monitor is gone (no more restarts to come)."""
    deadline = time.monotonic() + timeout
    while monitorlock.held(c.monitor_lock_path) or rt.load(c.id).state.status in (Status.RUNNING,
                                                                                   Status.RESTARTING):
        assert time.monotonic() < deadline, "the monitor never let go"
        time.sleep(0.05)
    return rt.load(c.id)


def test_on_failure_runs_the_command_again_up_to_n_times(rt):
    c = rt.create("busybox", ["sh", "-c", "echo run; exit 3"], restart="on-failure:2")
    rt.start(c)
    done = _settled(rt, c)
    assert (done.state.exit_code, done.state.restart_count) == (3, 2)
    assert [r.log for r in rt.logs(c)] == ["run\n"] * 3
    assert done.hostconfig["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    ok = rt.create("busybox", ["true"], restart="on-failure")  # a success is not restarted
    rt.start(ok)
    assert _settled(rt, ok).state.restart_count == 0


def test_always_restarts_until_a_user_stops_it(rt):
    c = rt.create("busybox", ["sh", "-c", "echo run; sleep 0.2"], restart="always")
    rt.start(c)
    deadline = time.monotonic() + 60
    while rt.load(c.id).state.restart_count < 2:
        assert time.monotonic() < deadline, "never restarted twice"
        time.sleep(0.05)
    rt.stop(c, timeout=5)  # running or between two runs: either way the policy is done
    done = _settled(rt, c)
    count = done.state.restart_count
    time.sleep(2)  # longer than the back-off reached here
    assert not rt.load(c.id).state.running and rt.load(c.id).state.restart_count == count
    rt.start(c)  # a user's start begins the count again
    assert rt.load(c.id).state.restart_count == 0
    rt.stop(c, timeout=5)
    _settled(rt, c)


def test_what_a_restart_policy_cannot_go_with_is_refused(rt):
    with pytest.raises(InvalidArgument, match="Conflicting options: --restart and --rm"):
        rt.create("busybox", ["true"], restart="always", auto_remove=True)
    for bad in ("sometimes", "always:3", "on-failure:x", "on-failure:-1"):
        with pytest.raises(InvalidArgument, match="restart policy"):
            rt.create("busybox", ["true"], restart=bad)
    c = rt.create("busybox", ["true"], restart="unless-stopped")
    with pytest.raises(InvalidArgument, match="a restart policy needs a detached container"):
        rt.run_created(c)
    assert not rt.load(c.id).state.running and rt.load(c.id).state.started_at is None


def test_policies_and_back_off_as_docker_computes_them():
    assert RestartPolicy.parse("on-failure:3").wants_restart(1, 2, False)
    assert not RestartPolicy.parse("on-failure:3").wants_restart(1, 3, False)
    assert not RestartPolicy.parse("on-failure").wants_restart(0, 0, False)
    assert RestartPolicy.parse("unless-stopped").wants_restart(0, 99, False)
    assert not RestartPolicy.parse("always").wants_restart(1, 0, True)  # stopped by a user
    assert RestartPolicy.parse("always").starts_at_boot(True)
    assert not RestartPolicy.parse("unless-stopped").starts_at_boot(True)
    backoff = Backoff()
    assert [backoff.next(0.5) for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff.next(30) == 0.1  # a run that lasted reset it
    big = Backoff()
    assert max(big.next(0) for _ in range(20)) == 60.0


def test_boot_starts_what_a_restarted_daemon_would(rt):
    from pydock.runtime.restart import start_at_boot

    always = rt.create("busybox", ["sleep", "60"], restart="always")
    unless = rt.create("busybox", ["sleep", "60"], restart="unless-stopped")
    stopped = rt.create("busybox", ["sleep", "60"], restart="unless-stopped")
    plain = rt.create("busybox", ["sleep", "60"])
    rt.start(stopped)
    rt.stop(stopped, timeout=1)  # a user stopped it: unless-stopped stays down
    _settled(rt, stopped)
    started = {cid for cid, error in start_at_boot(rt) if error is None}
    assert started == {always.id, unless.id}
    assert [rt.load(c.id).state.running for c in (always, unless, stopped, plain)] == [True, True, False, False]
    for c in (always, unless):
        rt.stop(c, timeout=1)
        _settled(rt, c)


def test_stop_timeout_is_the_containers_default_for_stop(rt):
    c = rt.create("busybox", ["sleep", "60"], stop_timeout=1)  # sleep ignores SIGTERM as PID 1
    rt.start(c)
    t0 = time.monotonic()
    rt.stop(c)  # no timeout given: the container's own, 1 s, not 10
    assert 1 <= time.monotonic() - t0 < 8 and rt.load(c.id).state.exit_code == 137
    assert c.config["StopTimeout"] == 1
    with pytest.raises(InvalidArgument, match="invalid --stop-timeout"):
        rt.create("busybox", ["true"], stop_timeout=-2)
