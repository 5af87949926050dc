"""Image commands: import, images, rmi, history, tag (Docker 0.7's spellings, `-notrunc` accepted too)."""

from __future__ import annotations

import dataclasses
import os
import sys
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from pydock.cli.formatting import format_option, go_time, print_items
from pydock.graph.tags import parse_reference, split_reference, validate_tag
from pydock.utils.errors import InvalidArgument, NotFound, PydockError
from pydock.utils.epoch import epoch_us
from pydock.utils.humanize import ago, ago_us, human_size
from pydock.utils.table import plain_table

if TYPE_CHECKING:
    from pydock.graph.image import Image, ImageRow

    Listed = Image | ImageRow  # an image as `images` lists it: a row, or the whole image when filtering
    from pydock.graph.lookup import ImageStore

#: imports bigger than this show a progress bar when stderr is a terminal.
PROGRESS_MIN_BYTES = 10 * 1000 * 1000
CREATED_BY_WIDTH = 45


def image_store(ctx: click.Context) -> ImageStore:
    """The ImageStore of this invocation's Runtime (opened once by `ctx.obj.runtime()`)."""
    return ctx.obj.runtime().images


def _notrunc_alias(f: Any) -> Any:
    """Docker 0.7's single-dash `-notrunc`, hidden next to `--no-trunc`."""
    f = click.option("-notrunc", "notrunc_alias", is_flag=True, hidden=True)(f)
    return click.option("--no-trunc", "no_trunc", is_flag=True, help="Don't truncate output.")(f)


class _ProgressReader:
    """A read-only stream wrapper that advances a click progress bar by the bytes read."""

    def __init__(self, raw: BinaryIO, bar: Any) -> None:
        self.raw = raw
        self.bar = bar

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bar.update(len(data))
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


@click.command("import")
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help="A Dockerfile instruction for the image's config: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, "
                   "LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR (repeatable).")
@click.argument("source", metavar="URL|-|FILE")
@click.argument("reference", metavar="[REPOSITORY[:TAG]]", required=False)
@click.pass_context
def import_(ctx: click.Context, changes: tuple[str, ...], source: str, reference: str | None) -> None:
    """Create a base image from a tarball (plain, gzip, bzip2 or xz): a file, `-` for stdin, or an http(s) URL
    (streamed, with progress). Prints the image id."""
    repo = tag = None
    if reference:
        repo, tag = parse_reference(reference)
        if split_reference(reference)[1] is None:
            tag = None
    store = image_store(ctx)
    kwargs = {"source": source, "changes": list(changes)}
    if source.startswith(("http://", "https://")):
        from pydock.graph.urlsource import open_url  # lazy: URL imports only

        with open_url(source) as (stream, length):
            if length and length > PROGRESS_MIN_BYTES and sys.stderr.isatty():
                with click.progressbar(length=length, label="Downloading", file=sys.stderr) as bar:
                    image = store.import_(_ProgressReader(stream, bar), repo, tag, **kwargs)  # type: ignore[arg-type]
            else:
                image = store.import_(stream, repo, tag, **kwargs)
    elif source == "-":
        image = store.import_(click.get_binary_stream("stdin"), repo, tag, **kwargs)
    else:
        try:
            f = open(source, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound(f"{source}: no such file") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{source} is a directory, not a tarball") from None
        except PermissionError:
            raise InvalidArgument(f"{source}: permission denied") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if size > PROGRESS_MIN_BYTES and sys.stderr.isatty():
                with click.progressbar(length=size, label="Importing", file=sys.stderr) as bar:
                    image = store.import_(_ProgressReader(f, bar), repo, tag, **kwargs)  # type: ignore[arg-type]
            else:
                image = store.import_(f, repo, tag, **kwargs)
    click.echo(image.id)


def _virtual_sizes(images: dict[str, Listed]) -> dict[str, int]:
    """id -> size of the image plus its ancestors, memoised over one listing."""
    out: dict[str, int] = {}

    def vsize(image_id: str) -> int:
        if image_id in out:
            return out[image_id]
        chain = []
        cur: str | None = image_id
        while cur and cur in images and cur not in out and cur not in chain:
            chain.append(cur)
            cur = images[cur].parent
        base = out.get(cur, 0) if cur else 0
        for i in reversed(chain):
            base += images[i].size
            out[i] = base
        return out[image_id]

    for image_id in images:
        vsize(image_id)
    return out


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (including intermediate layers).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image ids.")
@click.option("--digests", is_flag=True, help="Show the registry digest of each image.")
@click.option("--tree", is_flag=True, help="Show the layer tree as text (Docker 0.7's images --tree).")
@click.option("--viz", is_flag=True, help="Show the layer graph in Graphviz dot (Docker 0.7's images --viz).")
@_notrunc_alias
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Only images that match (reference, dangling, label, before, since).")
@format_option(short=False)
@click.argument("name", required=False)
@click.pass_context
def images(ctx: click.Context, all_: bool, quiet: bool, digests: bool, tree: bool, viz: bool, no_trunc: bool,
           notrunc_alias: bool, filters: tuple[str, ...], fmt: str | None, name: str | None) -> None:
    """List images: REPOSITORY TAG IMAGE ID CREATED VIRTUAL SIZE (NAME filters repositories, globs allowed)."""
    no_trunc = no_trunc or notrunc_alias
    if tree and viz:
        raise InvalidArgument("--tree and --viz are mutually exclusive")
    store = image_store(ctx)
    # rows (no configs decoded) unless a filter reads an image's config
    listing = {img.id: img for img in (store.graph.list() if filters else store.graph.rows())}
    vsizes = _virtual_sizes(listing)
    if tree or viz:
        by_image = store.tags.by_image()
        click.echo(_viz(listing, by_image) if viz else _tree(listing, by_image, vsizes, no_trunc), nl=False)
        return
    parents = {img.parent for img in listing.values() if img.parent}
    rows: list[tuple[Listed, str, str]] = []
    shown: set[str] = set()
    for repo, tags in sorted(store.tags.repositories().items()):
        if name is not None and not fnmatchcase(repo, name):
            continue
        for tag, image_id in sorted(tags.items()):
            if image_id in listing:
                rows.append((listing[image_id], repo, tag))
                shown.add(image_id)
    if name is None:
        for img in listing.values():
            if img.id not in shown and (all_ or img.id not in parents):
                rows.append((img, "<none>", "<none>"))
    if filters:
        rows = _filtered(ctx, rows, filters)
    rows.sort(key=lambda r: (-r[0].created.timestamp(), r[1] == "<none>", r[1], r[2] != "latest", r[2]))

    def show_id(image_id: str) -> str:
        return image_id if no_trunc else image_id[:12]

    if quiet:
        seen: set[str] = set()
        for img, _, _ in rows:
            if img.id not in seen:
                seen.add(img.id)
                click.echo(show_id(img.id))
        return

    def digest_of(img: Listed, repo: str) -> str:
        for rd in store.repo_digests(img.id):
            if rd.rpartition("@")[0] == repo:
                return rd.rpartition("@")[2]
        return "<none>"

    now_us = epoch_us(datetime.now(timezone.utc))  # one now for every row, as ps

    def since(img: Listed) -> str:
        return ago_us(epoch_us(img.created), now_us)

    if fmt and fmt.strip() != "table":
        print_items(fmt, ({"ID": show_id(img.id), "Repository": repo, "Tag": tag,
                           "Digest": digest_of(img, repo) if ".Digest" in fmt else "",
                           "CreatedSince": since(img), "CreatedAt": go_time(img.created),
                           "Size": human_size(vsizes.get(img.id, img.size)),
                           "VirtualSize": human_size(vsizes.get(img.id, img.size)),
                           "SharedSize": "N/A", "UniqueSize": "N/A", "Containers": "N/A"}
                          for img, repo, tag in rows), IMAGES_HEADERS)
        return
    if digests:
        table = [[repo, tag, digest_of(img, repo), show_id(img.id), since(img),
                  human_size(vsizes.get(img.id, img.size))] for img, repo, tag in rows]
        click.echo(plain_table(table, ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "VIRTUAL SIZE"]))
        return
    table = [[repo, tag, show_id(img.id), since(img), human_size(vsizes.get(img.id, img.size))]
             for img, repo, tag in rows]
    click.echo(plain_table(table, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "VIRTUAL SIZE"]))


def _filtered(ctx: click.Context, rows: list[tuple[Image, str, str]], specs: tuple[str, ...]
              ) -> list[tuple[Image, str, str]]:
    """The rows `images --filter` keeps (the API's filters, runtime/listfilters.py)."""
    from pydock.runtime.listfilters import ImageFilters  # lazy: only with --filter
    from pydock.runtime.usage import parse_filter_flags  # lazy: see above

    chosen = ImageFilters.parse(ctx.obj.runtime(), parse_filter_flags(specs))
    kept = []
    for img, repo, tag in rows:
        tagged = repo != "<none>"
        if not chosen.keeps(img) or not chosen.shows(tagged):
            continue
        if chosen.references and not (tagged and chosen.names([f"{repo}:{tag}"])):
            continue
        kept.append((img, repo, tag))
    return kept


#: the header each field of `images --format 'table ...'` gets (the docker CLI's)
IMAGES_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "VIRTUAL SIZE",
                  "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS"}


def _tree(listing: dict[str, Listed], by_image: dict[str, list[str]], vsizes: dict[str, int], no_trunc: bool) -> str:
    """Docker 0.7's `images --tree`: every layer under its parent, `└─`/`├─` branches."""
    children: dict[str | None, list[Listed]] = {}
    for img in sorted(listing.values(), key=lambda i: (i.created, i.id)):
        parent = img.parent if img.parent in listing else None
        children.setdefault(parent, []).append(img)
    out: list[str] = []
    stack: list[tuple[Listed, str, bool]] = [(img, "", i == len(children.get(None, [])) - 1)
                                            for i, img in enumerate(children.get(None, []))][::-1]
    while stack:
        img, indent, last = stack.pop()
        line = f"{indent}{'└─' if last else '├─'}{img.id if no_trunc else img.id[:12]} " \
               f"Virtual Size: {human_size(vsizes.get(img.id, img.size))}"
        if by_image.get(img.id):
            line += " Tags: " + ", ".join(by_image[img.id])
        out.append(line)
        kids = children.get(img.id, [])
        sub = indent + ("  " if last else "│ ")
        stack.extend((kid, sub, i == len(kids) - 1) for i, kid in reversed(list(enumerate(kids))))
    return "".join(line + "\n" for line in out)


def _viz(listing: dict[str, Listed], by_image: dict[str, list[str]]) -> str:
    """Docker 0.7's `images --viz`: the layer graph in Graphviz dot, tagged images as boxes."""
    lines = ["digraph docker {"]
    for img in sorted(listing.values(), key=lambda i: (i.created, i.id)):
        if img.parent and img.parent in listing:
            lines.append(f' "{img.parent[:12]}" -> "{img.id[:12]}"')
        else:
            lines.append(f' base -> "{img.id[:12]}" [style=invis]')
        if by_image.get(img.id):
            label = "\\n".join([img.id[:12], *by_image[img.id]])
            lines.append(f' "{img.id[:12]}" [label="{label}",shape=box,fillcolor="paleturquoise",'
                         'style="filled,rounded"];')
    lines.append(" base [style=invisible]")
    lines.append("}")
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("refs", metavar="IMAGE...", nargs=-1, required=True)
@click.pass_context
def rmi(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Remove images: untag, then delete layers nothing else uses. Continues past failures; exit 1 if any failed."""
    store = image_store(ctx)
    failed = False
    for ref in refs:
        try:
            for line in store.remove(ref):
                click.echo(line)
        except PydockError as err:
            failed = True
            click.echo(f"Error: {err}", err=True)
    if failed:
        click.echo("Error: failed to remove one or more images", err=True)
        ctx.exit(1)


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Only show image ids.")
@_notrunc_alias
@click.argument("ref", metavar="IMAGE")
@click.pass_context
def history(ctx: click.Context, quiet: bool, no_trunc: bool, notrunc_alias: bool, ref: str) -> None:
    """Show an image's layers, newest first: IMAGE CREATED CREATED BY SIZE."""
    no_trunc = no_trunc or notrunc_alias
    store = image_store(ctx)
    rows = store.history(store.get(ref))
    ids = [(r.id if no_trunc else r.id[:12]) if r.id else "<missing>" for r in rows]
    if quiet:
        for i in ids:
            click.echo(i)
        return
    table = []
    for shown, r in zip(ids, rows):
        created_by = r.created_by
        if not no_trunc and len(created_by) > CREATED_BY_WIDTH:
            created_by = created_by[: CREATED_BY_WIDTH - 3] + "..."
        table.append([shown, ago(r.created) if r.created else "N/A", created_by, human_size(r.size)])
    click.echo(plain_table(table, ["IMAGE", "CREATED", "CREATED BY", "SIZE"]))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Move the tag even if it points at another image.")
@click.argument("ref", metavar="IMAGE")
@click.argument("reference", metavar="REPOSITORY[:TAG]")
@click.argument("legacy_tag", metavar="[TAG]", required=False)
@click.pass_context
def tag(ctx: click.Context, force: bool, ref: str, reference: str, legacy_tag: str | None) -> None:
    """Tag an image into a repository (`tag IMAGE REPO[:TAG]`; Docker 0.7's `tag IMAGE REPO TAG` too)."""
    repo, tag_name = parse_reference(reference)
    if legacy_tag is not None:
        if split_reference(reference)[1] is not None:
            raise InvalidArgument("Give the tag either as REPOSITORY:TAG or as a separate argument, not both")
        tag_name = validate_tag(legacy_tag)
    image_store(ctx).tag(ref, repo, tag_name, force=force)


@click.group(context_settings={"help_option_names": ["--help"]})
def image() -> None:
    """Manage images (`image prune`; the other image commands are top-level, as in Docker 0.7)."""


@image.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Every image no container uses, not only dangling ones.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="until=TIME|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE].")
@click.pass_context
def prune(ctx: click.Context, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove dangling images (untagged, no child, no container), with -a every unused image; only those
    the filters match."""
    from pydock.runtime.usage import PruneFilters, parse_filter_flags, prune_images  # lazy: only for prune

    chosen = PruneFilters.parse(parse_filter_flags(filters), images=True)
    if all_:
        chosen = dataclasses.replace(chosen, dangling=False)
    if not force:
        click.confirm("WARNING! This will remove all " + ("images without at least one container associated to them"
                      if all_ else "dangling images") + ".\nAre you sure you want to continue?", abort=True)
    lines, freed = prune_images(ctx.obj.runtime(), chosen)
    if lines:
        click.echo("Deleted Images:\n" + "".join(line.replace("Untagged: ", "untagged: ").replace(
            "Deleted: ", "deleted: sha256:") + "\n" for line in lines))
    click.echo(f"Total reclaimed space: {human_size(freed)}")
