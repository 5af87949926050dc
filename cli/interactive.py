"""Interactive container commands: attach and exec, and the attached session `run -t` and `start -a`
share (terminal in raw mode, its size followed, detach keys, signals proxied without a tty)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from pydock.utils.errors import NotFound, PydockError

log = logging.getLogger(__package__)

#: what the docker CLI says when `attach` or `exec` end by the detach keys (it exits 1)
DETACHED_MESSAGE = "read escape sequence"


def detach_keys_option(f: Any) -> Any:
    return click.option("--detach-keys", "detach_keys", default=None, metavar="KEYS",
                        help="Keys that detach from the container (default ctrl-p,ctrl-q).")(f)


def sig_proxy_option(f: Any) -> Any:
    return click.option("--sig-proxy", "sig_proxy", type=click.BOOL, default=True, show_default=True,
                        help="Forward the signals pydock receives to the command (without a tty).")(f)


@contextmanager
def _proxy(rt: Any, c: Any, enabled: bool) -> Iterator[None]:
    """While a session runs without a tty, the signals the user sends to pydock go to the container."""
    if not enabled:
        yield
        return
    from pydock.runtime.monitor import SignalProxy  # lazy: only attached sessions

    def deliver(sig: int) -> None:
        try:
            rt.kill(c, sig, start_wait=0)
        except PydockError as err:  # it ended meanwhile: its EXIT ends the session
            log.debug("signal %d not forwarded: %s", sig, err)

    with SignalProxy(deliver):
        yield


def session(ctx: click.Context, rt: Any, c: Any, open_session: Callable[[Any], Any], *, stdin: bool,
            detach_keys: str | None, sig_proxy: bool, on_detach: str, redraw: bool = False,
            wait: Callable[[], int] | None = None) -> None:
    """Open a session (`open_session(hello)`), run it on this terminal, exit with the command's status.

    `on_detach`: "quiet" (exit 0, as `run`/`start -a`) or "error" (the docker CLI's message, exit 1, as
    `attach`/`exec`). `wait` gives the status when the supervisor went without saying it."""
    from pydock.runtime.attach import Hello  # lazy: only attached sessions
    from pydock.runtime.detachkeys import parse  # lazy: only attached sessions
    from pydock.runtime.terminal import Terminated, interact  # lazy: only attached sessions

    keys = parse(detach_keys)
    tty = bool(c.config.get("Tty"))
    hello = Hello(stdin=stdin, stdout=True, stderr=True)
    stdin_fd = sys.stdin.fileno() if stdin else None
    with open_session(hello) as s:
        try:
            with _proxy(rt, c, sig_proxy and not tty):
                outcome = interact(s, stdin=stdin_fd, stdout=click.get_binary_stream("stdout"),
                                   stderr=click.get_binary_stream("stderr"), detach_keys=keys, redraw=redraw)
        except Terminated as err:
            ctx.exit(128 + err.signum)
    if outcome.detached:
        if on_detach == "error":
            click.echo(DETACHED_MESSAGE, err=True)
            ctx.exit(1)
        ctx.exit(0)
    code = outcome.exit_code
    if code is None:
        code = wait() if wait is not None else rt.wait(c)
    ctx.exit(code)


def start_attached(ctx: click.Context, rt: Any, c: Any, *, stdin: bool, detach_keys: str | None,
                   sig_proxy: bool) -> None:
    """`run -t` and `start -a`: the session is joined before the command runs (nothing is missed)."""
    from pydock.runtime.terminal import terminal_size  # lazy: only attached sessions

    size = terminal_size(sys.stdin.fileno() if stdin else None) or terminal_size(sys.stdout.fileno())

    @contextmanager
    def opened(hello: Any) -> Iterator[Any]:
        with rt.start_attached(c, hello, size) as s:
            yield s

    session(ctx, rt, c, opened, stdin=stdin and bool(c.config.get("OpenStdin")), detach_keys=detach_keys,
            sig_proxy=sig_proxy, on_detach="quiet", wait=lambda: _wait_or_gone(rt, c))


def _wait_or_gone(rt: Any, c: Any) -> int:
    try:
        return rt.wait(c)
    except NotFound:  # auto-removed: the record is gone
        return c.state.exit_code


def join_running(ctx: click.Context, rt: Any, c: Any, *, stdin: bool, detach_keys: str | None, sig_proxy: bool,
                 on_detach: str) -> None:
    """`attach`, and `start -a` of a running container: a session through the container's attach socket."""

    @contextmanager
    def opened(hello: Any) -> Iterator[Any]:
        with rt.attach(c, hello) as s:
            yield s

    session(ctx, rt, c, opened, stdin=stdin and bool(c.config.get("OpenStdin")), detach_keys=detach_keys,
            sig_proxy=sig_proxy, on_detach=on_detach, redraw=True, wait=lambda: _wait_or_gone(rt, c))


@click.command()
@click.option("--no-stdin", "no_stdin", is_flag=True, help="Do not attach stdin.")
@detach_keys_option
@sig_proxy_option
@click.argument("ref", metavar="CONTAINER")
@click.pass_context
def attach(ctx: click.Context, no_stdin: bool, detach_keys: str | None, sig_proxy: bool, ref: str) -> None:
    """Attach this terminal to a running container's stdin, stdout and stderr."""
    rt = ctx.obj.runtime()
    join_running(ctx, rt, rt.get(ref), stdin=not no_stdin, detach_keys=detach_keys, sig_proxy=sig_proxy,
                 on_detach="error")


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (the command reads this one).")
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal of the container's (needs one here).")
@click.option("-u", "--user", default=None, metavar="USER[:GROUP]", help="Run as this user (name or uid).")
@click.option("-w", "--workdir", default=None, metavar="DIR", help="Working directory inside the container.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable.")
@detach_keys_option
@click.argument("ref", metavar="CONTAINER")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, detach: bool, interactive: bool, tty: bool, user: str | None, workdir: str | None,
          env: tuple[str, ...], detach_keys: str | None, ref: str, cmd: tuple[str, ...]) -> None:
    """Run a command in a running container; the exit status is the command's."""
    import os  # lazy: only exec

    from pydock.runtime.exec import ExecConfig  # lazy: only exec
    from pydock.runtime.options import parse_env  # lazy: see above

    if tty and not detach and not os.isatty(sys.stdin.fileno()):
        raise PydockError("the input device is not a TTY")
    rt = ctx.obj.runtime()
    env = tuple(parse_env(env, os.environ))  # a bare -e KEY copies the caller's KEY, as docker exec does
    cfg = ExecConfig(cmd=cmd, user=user, workdir=workdir, env=env, tty=tty, stdin=interactive and not detach)
    if tty and not detach:  # a session, as `attach`: the detach keys leave the exec running
        _exec_session(ctx, rt, rt.get(ref), cfg, detach_keys)
    code = rt.exec(rt.get(ref), cfg, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr, detach=detach)
    ctx.exit(code or 0)


def _exec_session(ctx: click.Context, rt: Any, c: Any, cfg: Any, detach_keys: str | None) -> None:
    """`exec -it`: the exec under a monitor of its own, this terminal joined to it (exits with its status)."""
    from pydock.runtime.terminal import terminal_size  # lazy: only attached sessions

    started: list[str] = []

    @contextmanager
    def opened(hello: Any) -> Iterator[Any]:
        exec_id, s = rt.exec_attached(c, cfg, hello, terminal_size(sys.stdin.fileno()))
        started.append(exec_id)
        with s:
            yield s

    def status() -> int:
        code = rt.exec_exit_code(started[0])
        return 126 if code is None else code  # its monitor went without a word

    session(ctx, rt, c, opened, stdin=cfg.stdin, detach_keys=detach_keys, sig_proxy=False, on_detach="error",
            wait=status)
