"""`pydock version` and `pydock info`."""

from __future__ import annotations

import click


def git_commit() -> str:
    """The commit pydock was built from: baked in by hack/make.sh binary/deb, else read from a checkout."""
    import subprocess
    from pathlib import Path

    try:
        from pydock.utils import buildinfo  # type: ignore[attr-defined]

        return buildinfo.GIT_COMMIT
    except ImportError:
        pass
    src = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


@click.command()
def version() -> None:
    """Show the pydock version, git commit and Python version."""
    import platform

    from pydock.utils.version import API_VERSION, VERSION

    click.echo(f"Client version: {VERSION}")
    click.echo(f"API version: {API_VERSION}")
    click.echo(f"Python version: {platform.python_version()}")
    click.echo(f"Git commit: {git_commit()}")
    click.echo(f"Kernel: {platform.release()}")


@click.command()
@click.pass_obj
def info(settings) -> None:
    """Show the root, storage driver and its status, counts, and kernel features found or missing."""
    from pydock.runtime.kernelcheck import check_features

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
        import os

        click.echo(f"Debug mode: true\nPID: {os.getpid()}")
