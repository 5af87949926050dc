"""`pydock cp`: copy files and directories between a container and the host, or a tar stream (`-`)
to stdout / from stdin, with Docker's rules for where things land (runtime/copy.py)."""

from __future__ import annotations

import click

from pydock.utils.errors import InvalidArgument


def _split(arg: str) -> tuple[str | None, str]:
    """(container, path) of `CONTAINER:PATH`; (None, arg) for a local path (one starting with `/` or `.`
    is local even with a colon in it, as in Docker)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


@click.command()
@click.option("-a", "--archive", is_flag=True, help="Archive mode: keep the files' uid/gid.")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow a symbolic link in SRC_PATH.")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DEST")
@click.pass_context
def cp(ctx: click.Context, archive: bool, follow_link: bool, src: str, dst: str) -> None:
    """Copy files/folders between a container and the local filesystem.

    \b
    pydock cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
    pydock cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH
    """
    from pydock.runtime import copy  # lazy: the archive package, only when copying

    src_ctr, src_path = _split(src)
    dst_ctr, dst_path = _split(dst)
    if src_ctr is not None and dst_ctr is not None:
        raise InvalidArgument("copying between containers is not supported")
    if src_ctr is None and dst_ctr is None:
        raise InvalidArgument("must specify at least one container source")
    if (src_ctr is not None and not src_path) or (dst_ctr is not None and not dst_path):
        raise InvalidArgument("filepath cannot be empty")
    rt = ctx.obj.runtime()
    if src_ctr is not None:
        if dst_path == "-":
            out = click.get_binary_stream("stdout")
            if out.isatty():
                raise InvalidArgument("Refusing to write a tar archive to a terminal: redirect stdout")
            with rt.container_files(rt.get(src_ctr), src_ctr) as files:
                files.archive(_followed(files, src_path, follow_link), out)
            out.flush()
            return
        with rt.container_files(rt.get(src_ctr), src_ctr) as files:
            copy.copy_out(files, src_path, dst_path, follow_link=follow_link, archive=archive)
        return
    assert dst_ctr is not None
    stdin = click.get_binary_stream("stdin") if src_path == "-" else None
    with rt.container_files(rt.get(dst_ctr), dst_ctr) as files:
        copy.copy_in(files, src_path, dst_path, follow_link=follow_link, archive=archive, stdin=stdin)


def _followed(files, path: str, follow_link: bool) -> str:  # noqa: ANN001 - a runtime.copy.ContainerFiles
    """With -L, a symlink SRC streamed to stdout is its target's content."""
    if not follow_link:
        return path
    st = files.stat(path)
    return st.link_target if st.is_symlink else path
