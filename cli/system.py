"""`pydock version`, `pydock info` and `pydock system df`."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from pathlib import Path

import click

from pydock.runtime.kernelcheck import check_features
from pydock.utils.table import plain_table
from pydock.utils.version import API_VERSION, VERSION, build_info

log = logging.getLogger(__package__)


def git_commit() -> str:
    """The commit pydock was built from: baked in by hack/make.sh binary/deb, else read from a checkout."""
    info = build_info()
    if info is not None:
        return info.GIT_COMMIT
    src = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError) as err:
        log.debug("git commit unknown: %s", err)
        return "unknown"
    if out.returncode != 0:
        log.debug("git commit unknown: git rev-parse in %s: %s", src, out.stderr.strip())
        return "unknown"
    return out.stdout.strip()


@click.command()
def version() -> None:
    """Show the pydock version, git commit and Python version."""
    click.echo(f"Client version: {VERSION}")
    click.echo(f"API version: {API_VERSION}")
    click.echo(f"Python version: {platform.python_version()}")
    click.echo(f"Git commit: {git_commit()}")
    click.echo(f"Kernel: {platform.release()}")


@click.command()
@click.pass_obj
def info(settings) -> None:
    """Show the root, storage driver and its status, counts, and kernel features found or missing."""
    rt = settings.runtime()
    containers = rt.containers(all=True)
    running = sum(1 for c in containers if c.state.running)
    click.echo(f"Containers: {len(containers)} ({running} running)")
    click.echo(f"Images: {len(rt.images.graph.list())}")
    click.echo(f"Root Dir: {rt.layout.root}")
    click.echo(f"Storage Driver: {rt.driver.name}")
    click.echo(f" Why: {rt.driver_reason}")
    for key, value in rt.driver.status():
        click.echo(f" {key}: {value}")
    click.echo("Kernel features:")
    for feature in check_features():
        mark = "found" if feature.found else "missing"
        click.echo(f" {feature.name}: {mark} ({feature.detail})")
    if settings.debug:
        click.echo(f"Debug mode: true\nPID: {os.getpid()}")


@click.group(context_settings={"help_option_names": ["--help"]})
def system() -> None:
    """Manage pydock (`system df`)."""


@system.command()
@click.pass_context
def df(ctx: click.Context) -> None:
    """Show the disk space images, containers and volumes use, and how much of it is reclaimable."""
    from pydock.runtime.usage import disk_usage, summary_rows  # lazy: only for df
    from pydock.utils.humanize import human_size  # lazy: see above

    rows = []
    for kind, total, active, size, reclaimable in summary_rows(disk_usage(ctx.obj.runtime())):
        share = f" ({reclaimable * 100 // size}%)" if size else ""
        rows.append([kind, str(total), str(active), human_size(size), human_size(reclaimable) + share])
    click.echo(plain_table(rows, ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]))
