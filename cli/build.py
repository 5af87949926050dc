"""`pydock build`: an image from a Dockerfile, with Docker's classic builder (runtime/builder/)."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import click

from pydock.utils.errors import InvalidArgument, PydockError


class _TerminalOutput:
    """The build's lines and RUN's stdout on our stdout, RUN's stderr on our stderr; with `-q` all of it
    kept back (shown only if the build fails)."""

    def __init__(self, quiet: bool) -> None:
        self.held = io.BytesIO() if quiet else None
        self.stdout: Any = self.held if self.held is not None else _Flushing(sys.stdout.buffer)
        self.stderr: Any = self.held if self.held is not None else _Flushing(sys.stderr.buffer)

    def line(self, text: str) -> None:
        self.stdout.write(text.encode("utf-8", "surrogateescape") + b"\n")
        self.stdout.flush()

    def image(self, image_id: str) -> None:
        """Each stage's image: nothing to show on a terminal (the API reports it)."""

    def replay(self) -> None:
        if self.held is not None and self.held.getvalue():
            sys.stderr.buffer.write(self.held.getvalue())
            sys.stderr.buffer.flush()


class _Flushing:
    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def write(self, data: bytes) -> None:
        self.raw.write(data)
        self.raw.flush()

    def flush(self) -> None:
        self.raw.flush()


def _build_args(items: tuple[str, ...]) -> dict[str, str | None]:
    """`K=V`, or `K` for the value of the variable K here (None if unset), as the docker CLI sends them."""
    out: dict[str, str | None] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"--build-arg {item!r}: the name is empty")
        out[key] = value if eq else os.environ.get(key)
    return out


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"--label {item!r}: the name is empty")
        out[key] = value
    return out


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="Name the image (repeatable).")
@click.option("-f", "--file", "dockerfile", metavar="PATH",
              help="The Dockerfile (default: PATH/Dockerfile; '-' reads it from stdin).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY[=VALUE]",
              help="A build argument (KEY alone takes this shell's value).")
@click.option("--no-cache", is_flag=True, help="Build every step again (no cached images).")
@click.option("-no-cache", "no_cache_alias", is_flag=True, hidden=True)
@click.option("--target", metavar="STAGE", help="Build up to this stage.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label for the image (repeatable).")
@click.option("--rm/--no-rm", "remove", default=True, show_default=True,
              help="Remove intermediate containers after a successful step.")
@click.option("-rm", "rm_alias", is_flag=True, hidden=True)
@click.option("--force-rm", is_flag=True, help="Always remove intermediate containers, even after a failure.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id (the output shows if the build fails).")
@click.option("--network", type=click.Choice(["default", "bridge", "none"]), default="default",
              help="Networking of RUN steps: the bridge (default) or none.")
@click.argument("path", metavar="PATH | -")
@click.pass_context
def build(ctx: click.Context, tags: tuple[str, ...], dockerfile: str | None, build_args: tuple[str, ...],
          no_cache: bool, no_cache_alias: bool, target: str | None, labels: tuple[str, ...], remove: bool,
          rm_alias: bool, force_rm: bool, quiet: bool, network: str, path: str) -> None:
    """Build an image from a Dockerfile and a context: a directory (its .dockerignore applied), `-` for a
    tar of the context on stdin (plain or compressed), or `-` for a Dockerfile alone on stdin."""
    from pydock.graph.scratch import scratch_dir  # lazy: the builder, only for this command
    from pydock.runtime.builder.builder import build as run_build, check_tags  # lazy: the builder
    from pydock.runtime.builder.context import BuildContext, is_tar_stream  # lazy: the builder
    from pydock.runtime.builder.state import BuildOptions  # lazy: the builder

    if path.startswith(("http://", "https://", "git://", "git@", "github.com/")):
        raise InvalidArgument(f"{path}: remote build contexts (URLs, git) are not supported; give a directory "
                              "or '-' for a tar on stdin")
    if path == "-" and dockerfile == "-":
        raise InvalidArgument("invalid argument: can't use stdin for both build context and dockerfile")
    check_tags(tags)
    options = BuildOptions(tags=tags, build_args=_build_args(build_args), no_cache=no_cache or no_cache_alias,
                           target=target, labels=_labels(labels), remove=remove or force_rm, force_remove=force_rm,
                           network=network != "none", insecure_registries=ctx.obj.insecure_registries)
    out = _TerminalOutput(quiet)
    stdin = click.get_binary_stream("stdin")
    rt = ctx.obj.runtime()
    try:
        with scratch_dir(rt.layout.graph_tmp) as scratch:
            if path == "-":
                from pydock.archive.compression import read_head  # lazy: `build -` only

                head, stream = read_head(stdin, 512)
                if is_tar_stream(head):
                    context = BuildContext.from_tar(stream, scratch, dockerfile)
                else:
                    context = BuildContext.empty(scratch, stream.read())
            elif dockerfile == "-":
                context = BuildContext.from_directory(path, "-", stdin.read())
            else:
                context = BuildContext.from_directory(path, dockerfile)
            image_id = run_build(rt, context, options, out)
    except PydockError:
        out.replay()
        raise
    except KeyboardInterrupt:
        out.replay()
        click.echo("Error: build interrupted: its container is removed; the images of finished steps stay",
                   err=True)
        ctx.exit(130)
    if quiet:
        click.echo(f"sha256:{image_id}")
