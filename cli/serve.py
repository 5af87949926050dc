"""`pydock serve`: the Docker Engine API (v1.24-1.44) on a unix socket (or loopback tcp), for the real
docker CLI and SDK, over the same Runtime and detached monitors as the pydock CLI."""

from __future__ import annotations

import click


@click.command()
@click.option("-H", "--host", "hosts", multiple=True, metavar="unix:///PATH|tcp://127.0.0.1:PORT",
              help="Where to listen (repeatable; default unix:///var/run/pydock.sock). tcp is loopback only.")
@click.pass_context
def serve(ctx: click.Context, hosts: tuple[str, ...]) -> None:
    """Serve the Docker Engine API until SIGINT/SIGTERM (`DOCKER_HOST=unix:///var/run/pydock.sock docker ps`)."""
    import signal
    import threading

    from pydock.runtime.api_routes import Api
    from pydock.runtime.api_server import DEFAULT_HOST, Serving, bind, parse_host
    from pydock.runtime.api_starter import Starter
    from pydock.runtime.errors import PydockError

    settings = ctx.obj
    listens = [parse_host(h) for h in hosts or (DEFAULT_HOST,)]
    root = str(settings.root)
    # open (and so create/check) the root once before anything listens: a bad root fails here
    from pydock.runtime.runtime import Runtime

    with Runtime(root, settings.driver) as rt:
        reason = rt.driver_reason
        rt.reconcile()
    starter = Starter(root, settings.driver)
    servers = []
    api = None
    try:
        api = Api(root, settings.driver, starter, git_commit=_commit())
        api.sweep_auto_remove()
        for listen in listens:
            servers.append(bind(listen, api, debug=settings.debug))
    except BaseException:
        for s in servers:
            s.server_close()
        starter.close()
        if api is not None:
            api.pool.close()
        raise
    done = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        done.set()

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack
    try:
        with Serving(servers):
            for listen in listens:
                click.echo(f"API listening on {listen}", err=True)
            click.echo(f"Storage: {reason}", err=True)
            while not done.wait(1.0):
                pass
    except PydockError:
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        starter.close()
        api.pool.close()


def _commit() -> str:
    try:
        from pydock.cli.system import _git_commit

        return _git_commit()
    except Exception:  # noqa: BLE001 - the version endpoint must not fail on this
        return ""
