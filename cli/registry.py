"""Images from and to the ecosystem: save, load (archives); pull, push, login, logout (registries)."""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO

import click

from pydock.utils.errors import InvalidArgument, NotFound


def _store(ctx: click.Context) -> Any:
    return ctx.obj.runtime().images


@click.command()
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["docker", "oci"]), default="docker", show_default=True,
              help="docker: docker save's archive (an OCI layout with manifest.json); oci: the OCI layout alone.")
@click.argument("refs", metavar="IMAGE...", nargs=-1, required=True)
@click.pass_context
def save(ctx: click.Context, output: str | None, fmt: str, refs: tuple[str, ...]) -> None:
    """Save images (with their layers and tags) to a tar archive."""
    from pydock.graph.archives import save as save_archive  # lazy: archive writing, only for save

    store = _store(ctx)
    for ref in refs:
        store.get(ref)  # every name checked before anything is written
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to write an archive to a terminal: use -o FILE or redirect")
        save_archive(store, list(refs), sys.stdout.buffer, fmt)
        sys.stdout.buffer.flush()
        return
    tmp = f"{output}.pydock-partial-{os.getpid()}"
    try:
        with open(tmp, "xb") as f:
            save_archive(store, list(refs), f, fmt)  # type: ignore[arg-type]
        os.rename(tmp, output)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@click.command()
@click.option("-i", "--input", "input_", metavar="FILE", help="Read from FILE instead of stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def load(ctx: click.Context, input_: str | None, quiet: bool) -> None:
    """Load images from a tar archive (docker save, podman save, OCI layout; gzip/bzip2/xz or plain)."""
    from pydock.graph.archives import load as load_archive  # lazy: archive reading, only for load

    store = _store(ctx)
    if input_ is None:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is a terminal: use -i FILE or redirect")
        lines = load_archive(store, click.get_binary_stream("stdin"))
    else:
        try:
            f: BinaryIO = open(input_, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound(f"{input_}: no such file") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{input_} is a directory, not an archive") from None
        with f:
            lines = load_archive(store, f)
    if not quiet:
        for line in lines:
            click.echo(line)


class ProgressDisplay:
    """docker pull's display: on a terminal one line per layer, redrawn in place with a bar; otherwise
    one plain line each time a layer's status changes."""

    def __init__(self, stream: Any = None) -> None:
        import threading  # lazy: only the registry commands show progress

        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.order: list[str] = []
        self.last: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, p: Any) -> None:
        with self.lock:
            if not p.id:
                self.stream.write(p.status + "\n")
                self.stream.flush()
                return
            line = f"{p.id}: {p.status}"
            if p.total and p.status in ("Downloading", "Extracting", "Pushing"):
                line += " " + _bar(p.current, p.total) if self.tty else ""
            if not self.tty:
                if self.last.get(p.id) == p.status:
                    return
                self.last[p.id] = p.status
                self.stream.write(line + "\n")
            elif p.id not in self.order:
                self.order.append(p.id)
                self.stream.write(line + "\n")
            else:
                up = len(self.order) - self.order.index(p.id)
                self.stream.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")
            self.stream.flush()


def _bar(current: int, total: int, width: int = 50) -> str:
    from pydock.utils.humanize import human_size  # lazy: only the progress display

    done = min(width, int(width * current / total)) if total else 0
    arrow = "=" * max(0, done - 1) + (">" if done else "")
    return f"[{arrow:<{width}}] {human_size(current)}/{human_size(total)}"


def _insecure(ctx: click.Context) -> tuple[str, ...]:
    return tuple(getattr(ctx.obj, "insecure_registries", ()) or ())


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only the image's name.")
@click.option("--platform", default=None, help="Only linux/<this host's architecture> is supported.")
@click.argument("name", metavar="NAME[:TAG|@DIGEST]")
@click.pass_context
def pull(ctx: click.Context, quiet: bool, platform: str | None, name: str) -> None:
    """Pull an image from a registry (Docker Hub by default)."""
    from pydock.graph.distribution import manifest  # lazy: the distribution client, only for registry commands

    if platform is not None and platform != "/".join(p for p in manifest.host_platform() if p):
        raise InvalidArgument(f"--platform {platform}: only this host's platform "
                              f"({'/'.join(p for p in manifest.host_platform() if p)}) can be pulled")
    result = pull_reference(ctx, name, None if quiet else ProgressDisplay())
    click.echo(result.reference.name + (f":{result.reference.tag}" if result.reference.tag and not
                                        result.reference.digest else f"@{result.digest}"))


def pull_reference(ctx: click.Context, name: str, progress: Any) -> Any:
    """Pull `name` into this invocation's image store (for `pull`, and `run`/`create` of a missing image);
    Ctrl-C ends the command with 130 and nothing half-registered."""
    from pydock.graph.distribution.pull import pull as pull_image  # lazy: the distribution client, only for registry commands

    try:
        return pull_image(_store(ctx), name, progress=progress, insecure=_insecure(ctx))
    except KeyboardInterrupt:
        click.echo(f"Error: pull of {name} interrupted: nothing was registered for the layers in progress", err=True)
        ctx.exit(130)


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.argument("name", metavar="NAME[:TAG]")
@click.pass_context
def push(ctx: click.Context, quiet: bool, name: str) -> None:
    """Push an image to the registry its name names (Docker Hub by default)."""
    from pydock.graph.distribution.push import push as push_image  # lazy: the distribution client, only for registry commands

    store = _store(ctx)
    push_image(store, name, progress=None if quiet else ProgressDisplay(), insecure=_insecure(ctx))


def _registry_host(server: str | None) -> str:
    """The registry a login/logout names: a host[:port], or a URL of one; Docker Hub by default."""
    from pydock.graph.distribution.reference import DEFAULT_DOMAIN  # lazy: the distribution client, only for registry commands

    if not server:
        return DEFAULT_DOMAIN
    for prefix in ("https://", "http://"):
        server = server.removeprefix(prefix)
    host = server.split("/", 1)[0]
    if not host:
        raise InvalidArgument(f"invalid registry {server!r}")
    return DEFAULT_DOMAIN if host in ("index.docker.io", "registry-1.docker.io") else host


@click.command()
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (visible to other users: prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.argument("server", metavar="[SERVER]", required=False)
@click.pass_context
def login(ctx: click.Context, username: str | None, password: str | None, password_stdin: bool,
          server: str | None) -> None:
    """Log in to a registry; the credentials go to Docker's config.json (shared with docker login)."""
    from pydock.graph.distribution import auth  # lazy: the distribution client, only for registry commands
    from pydock.graph.distribution.client import Registry  # lazy: the distribution client, only for registry commands
    from pydock.graph.distribution.reference import DEFAULT_DOMAIN, HUB_API_HOST  # lazy: the distribution client, only for registry commands

    host = _registry_host(server)
    if password_stdin:
        if password is not None:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not username:
            raise InvalidArgument("must provide --username with --password-stdin")
        password = sys.stdin.readline().rstrip("\r\n")
    if not username:
        if not sys.stdin.isatty():
            raise InvalidArgument("cannot ask for a username: stdin is not a terminal (use -u)")
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            raise InvalidArgument("cannot ask for a password: stdin is not a terminal (use --password-stdin)")
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise InvalidArgument("username and password must not be empty")
    creds = auth.Credentials(username, password)
    api_host = HUB_API_HOST if host == DEFAULT_DOMAIN else host
    reg = Registry(api_host, creds, insecure=host in _insecure(ctx))
    try:
        reg.ping()
    finally:
        reg.close()
    auth.store(host, creds)
    click.echo("Login Succeeded")


@click.command()
@click.argument("server", metavar="[SERVER]", required=False)
def logout(server: str | None) -> None:
    """Forget the credentials stored for a registry."""
    from pydock.graph.distribution import auth  # lazy: the distribution client, only for registry commands

    host = _registry_host(server)
    if auth.remove(host):
        click.echo(f"Removing login credentials for {auth.server_key(host)}")
    else:
        click.echo(f"Not logged in to {auth.server_key(host)}")
