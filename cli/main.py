"""The `pydock` command group: global options, lazy sub-command loading, and error-to-exit-code mapping."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from pydock.utils import afterwards
from pydock.utils.errors import USAGE_EXIT, PydockError
from pydock.utils.paths import DEFAULT_ROOT, DRIVER_ENV, ROOT_ENV

log = logging.getLogger(__package__)

#: every pydock.* record, one line each (a traceback, with -D, follows its line)
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

# command name -> "module:function"; modules are imported only when their command runs,
# so `pydock run` never pays for the imports of `pydock images` (start-up time is the budget).
COMMANDS: dict[str, str] = {
    # system
    "version": "pydock.cli.system:version",
    "info": "pydock.cli.system:info",
    "system": "pydock.cli.system:system",
    # images
    "import": "pydock.cli.images:import_",
    "images": "pydock.cli.images:images",
    "rmi": "pydock.cli.images:rmi",
    "history": "pydock.cli.images:history",
    "tag": "pydock.cli.images:tag",
    "save": "pydock.cli.registry:save",
    "load": "pydock.cli.registry:load",
    "pull": "pydock.cli.registry:pull",
    "push": "pydock.cli.registry:push",
    "login": "pydock.cli.registry:login",
    "logout": "pydock.cli.registry:logout",
    "build": "pydock.cli.build:build",
    "image": "pydock.cli.images:image",
    # containers
    "run": "pydock.cli.containers:run",
    "create": "pydock.cli.containers:create",
    "ps": "pydock.cli.containers:ps",
    "rm": "pydock.cli.containers:rm",
    "start": "pydock.cli.containers:start",
    "stop": "pydock.cli.containers:stop",
    "restart": "pydock.cli.containers:restart",
    "kill": "pydock.cli.containers:kill",
    "wait": "pydock.cli.containers:wait",
    "logs": "pydock.cli.containers:logs",
    "inspect": "pydock.cli.containers:inspect",
    "top": "pydock.cli.containers:top",
    "diff": "pydock.cli.containers:diff",
    "commit": "pydock.cli.containers:commit",
    "export": "pydock.cli.containers:export",
    "update": "pydock.cli.containers:update",
    "cp": "pydock.cli.copy:cp",
    "volume": "pydock.cli.volumes:volume",
    "network": "pydock.cli.networks:network",
    "container": "pydock.cli.containers:container",
    "boot": "pydock.cli.containers:boot",
    "attach": "pydock.cli.interactive:attach",
    "exec": "pydock.cli.interactive:exec_",
    "pause": "pydock.cli.containers:pause",
    "unpause": "pydock.cli.containers:unpause",
    "rename": "pydock.cli.containers:rename",
    "stats": "pydock.cli.containers:stats",
    "events": "pydock.cli.events:events",
    # names, links, ports
    "link": "pydock.cli.links:link",
    "ls": "pydock.cli.links:ls",
    "port": "pydock.cli.links:port",
    # the Docker Engine API
    "serve": "pydock.cli.serve:serve",
}


@dataclass
class Settings:
    """Global options, and the Runtime they open on first use."""

    root: Path
    driver: str | None
    debug: bool
    bridge: str = "pydock0"
    bip: str | None = None
    icc: bool = True
    storage_opts: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    _runtime: Any = field(default=None, repr=False)

    def runtime(self) -> Any:
        """The Runtime for this invocation (opened once, closed when the command ends: after its answer
        where the front end gives that first, utils/afterwards.py)."""
        if self._runtime is None:
            from pydock.runtime.runtime import Runtime  # lazy: `pydock --help` and usage errors never load it

            options = {}
            if self.storage_opts:
                from pydock.devmapper.drivers import parse_storage_opts  # lazy: only with --storage-opt

                options = parse_storage_opts(self.storage_opts)
            self._runtime = Runtime(self.root, driver=self.driver, bridge=self.bridge, bip=self.bip, icc=self.icc,
                                    storage_options=options)
            runtime = self._runtime
            click.get_current_context().call_on_close(lambda: afterwards.later(runtime.close))
        return self._runtime


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (click's test runner and pytest swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


def configure_logging(debug: bool) -> None:
    """The only place pydock configures logging: the `pydock` logger tree goes to stderr, at DEBUG with
    -D/--debug and WARNING otherwise. Library modules only log (`logging.getLogger(__package__)`)."""
    tree = logging.getLogger("pydock")
    level = logging.DEBUG if debug else logging.WARNING
    if tree.level != level:  # setLevel empties every logger's cache (each command calls this twice)
        tree.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in tree.handlers):
        tree.addHandler(_StderrHandler())


#: commands whose own failures exit 125, as `docker run`'s do: their callers tell pydock's failure
#: from the container command's exit status by it
CONTAINER_RUNNERS = frozenset({"run"})  # `docker create` exits 1 on its errors


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on demand from COMMANDS."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PydockError as err:
            if ctx.invoked_subcommand in CONTAINER_RUNNERS and err.exit_code < 125:  # 126, 127 stay
                err.exit_code = 125
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["--help"]})
@click.option("-g", "--graph", "root", type=click.Path(path_type=Path), envvar=ROOT_ENV,
              default=DEFAULT_ROOT, show_default=True, help="Root of pydock's state.")
@click.option("-s", "--storage-driver", "driver", envvar=DRIVER_ENV, default=None,
              help="Storage driver: devicemapper, overlay or vfs (default: the one the root holds, else the best "
              "available).")
@click.option("--storage-opt", "storage_opts", multiple=True, envvar="PYDOCK_STORAGE_OPT",
              metavar="KEY=VALUE", help="Storage driver option, e.g. dm.basesize=20G, dm.loopdatasize=200G, "
              "dm.loopmetadatasize=4G, dm.min_free_space=10% (sizes apply when the pool is created).")
@click.option("-D", "--debug", is_flag=True, help="Show tracebacks and debug output.")
@click.option("-b", "--bridge", envvar="PYDOCK_BRIDGE", default="pydock0", show_default=True,
              help="Bridge containers attach to; 'none' disables networking.")
@click.option("--bip", envvar="PYDOCK_BIP", default=None,
              help="The bridge's address and subnet, e.g. 10.42.0.1/16 (default: a free 172.17/10.x range).")
@click.option("--icc", envvar="PYDOCK_ICC", type=click.BOOL, default=True, show_default=True,
              help="Inter-container communication; with false only linked ports pass.")
@click.option("--insecure-registry", "insecure_registries", multiple=True, metavar="HOST:PORT",
              envvar="PYDOCK_INSECURE_REGISTRY",
              help="A registry reached over plain http (loopback registries always may be).")
@click.pass_context
def cli(ctx: click.Context, root: Path, driver: str | None, storage_opts: tuple[str, ...], debug: bool,
        bridge: str, bip: str | None, icc: bool, insecure_registries: tuple[str, ...]) -> None:
    """pydock: a container runtime in the shape of Docker 0.7.

    There is no daemon: every command works on the root directly, and the network options
    (-b, --bip, --icc) describe the bridge every command should find; the bridge is set up, or
    switched, by the next command that needs it.
    """
    configure_logging(debug)
    ctx.obj = Settings(root=root.absolute(), driver=driver, debug=debug, bridge=bridge, bip=bip, icc=icc,
                       storage_opts=storage_opts, insecure_registries=insecure_registries)
    log.debug("pid %d: %s, root %s, storage driver %s, bridge %s", os.getpid(), ctx.invoked_subcommand,
              ctx.obj.root, driver or "(best available)", bridge)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the group, turn PydockError into `Error: <message>` and its exit code.

    With -D (read by the group from pydock's own options, never from a container command's arguments)
    the error's traceback is logged at debug level before that line.
    """
    configure_logging(debug=False)  # until the group has parsed -D (a previous in-process call may have set it)
    try:
        rv = cli.main(args=argv, prog_name="pydock", standalone_mode=False)
    except PydockError as err:
        log.debug("%s: %s", type(err).__name__, err, exc_info=True)
        click.echo(f"Error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    except click.UsageError as err:
        err.show()
        return USAGE_EXIT
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    # click returns the code of ctx.exit(N) in non-standalone mode (e.g. `run` propagating exit status)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
