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
    import faulthandler
    import signal
    import threading

    from pydock.runtime.api.routes import Api
    from pydock.runtime.api.httpd import DEFAULT_HOST, Serving, bind, close, parse_host
    from pydock.runtime.api.starter import Starter
    from pydock.runtime.runtime import Runtime

    settings = ctx.obj
    listens = [parse_host(h) for h in hosts or (DEFAULT_HOST,)]
    root = str(settings.root)
    # a bad root or driver fails here, before anything listens; dead monitors are repaired first
    with Runtime(root, settings.driver) as rt:
        reason = rt.driver_reason
        rt.reconcile()
    servers: list = []
    starter = api = None
    try:
        # bind first: a socket another server holds is refused before any helper is spawned
        for listen in listens:
            servers.append(bind(listen, None, debug=settings.debug))
        starter = Starter(root, settings.driver)
        api = Api(root, settings.driver, starter, git_commit=_commit())
        api.sweep_auto_remove()
        for s in servers:
            s.router = api
        done = threading.Event()
        old = {sig: signal.signal(sig, lambda _s, _f: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack
        try:
            with Serving(servers):
                servers = []  # Serving closes them (and unlinks the sockets) from here on
                for listen in listens:
                    click.echo(f"API listening on {listen}", err=True)
                click.echo(f"Storage: {reason}", err=True)
                while not done.wait(1.0):
                    pass
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
    finally:
        close(servers)  # only those bound but never served (an error on the way up)
        if starter is not None:
            starter.close()
        if api is not None:
            api.pool.close()


def _commit() -> str:
    try:
        from pydock.cli.system import git_commit

        return git_commit()
    except Exception:  # noqa: BLE001 - the version endpoint must not fail on this
        return ""
