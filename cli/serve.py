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
    import faulthandler  # lazy: this and below only when serving, not for `pydock --help`
    import signal  # lazy: see above
    import threading  # lazy: see above

    from pydock.cli.system import git_commit  # lazy: see above
    from pydock.devmapper.drivers import parse_storage_opts  # lazy: see above
    from pydock.runtime.api import httpd  # lazy: see above
    from pydock.runtime.api.router import Router  # lazy: see above
    from pydock.runtime.api.services import RuntimePool, Services  # lazy: see above
    from pydock.runtime.api.starter import Starter  # lazy: see above
    from pydock.runtime.runtime import Runtime  # lazy: see above

    settings = ctx.obj
    listens = [httpd.parse_host(h) for h in hosts or (httpd.DEFAULT_HOST,)]
    # the Runtime's keyword arguments, as the CLI opens it (the starter's helpers get them as JSON)
    options = {"root": str(settings.root), "driver": settings.driver, "bridge": settings.bridge,
               "bip": settings.bip, "icc": settings.icc,
               "storage_options": parse_storage_opts(settings.storage_opts)}
    # a bad root or driver fails here, before anything listens; dead monitors are repaired first
    with Runtime(**options) as rt:
        reason = rt.driver_reason
        rt.reconcile()
    servers: list = []
    services = None
    try:
        # bind first: a socket another server holds is refused before any helper is spawned
        for listen in listens:
            servers.append(httpd.bind(listen, None, debug=settings.debug))
        services = Services(pool=RuntimePool(options), starter=Starter(options), git_commit=git_commit(),
                            insecure_registries=tuple(settings.insecure_registries))
        router = Router(services)
        for s in servers:
            s.router = router
        done = threading.Event()
        old = {sig: signal.signal(sig, lambda _s, _f: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack
        try:
            with httpd.Serving(servers):
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
        httpd.close(servers)  # only those bound but never served (an error on the way up)
        if services is not None:
            services.close()

