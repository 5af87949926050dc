"""Container commands: run, create, ps, rm, start, stop, restart, kill, wait, logs, inspect, top, diff, commit,
export (attached sessions, attach and exec: interactive.py).

Docker 0.7's single-dash long spellings (`-name`, `-rm`, `-link`, `-notrunc`, `-cidfile`, `-entrypoint`)
are accepted as hidden aliases. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from pydock.cli.each import each
from pydock.cli.formatting import format_option, go_time, print_each, print_items
from pydock.cli.interactive import detach_keys_option, sig_proxy_option
from pydock.runtime.options import CreateOptions, parse_env, read_env_files
from pydock.utils.signals import parse_signal
from pydock.runtime.state import Status, format_time, utcnow
from pydock.utils.epoch import epoch_us
from pydock.utils.errors import InvalidArgument, NotFound, PydockError
from pydock.utils.humanize import ago_us, human_duration, human_size
from pydock.utils.table import plain_table

COMMAND_WIDTH = 20
#: images pydock builds itself instead of pulling them.
BUILT_IN_IMAGES = ("busybox", "busybox:latest")

log = logging.getLogger(__package__)


def _alias(flag: str, dest: str, **kw: Any) -> Callable[[Any], Any]:
    """A hidden Docker-0.7 single-dash spelling of an option, stored in `<dest>_alias`."""
    return click.option(flag, f"{dest}_alias", hidden=True, **kw)


def _container_options(f: Any) -> Any:
    """The options `run` and `create` share (Docker 0.7's `run` flags)."""
    decorators = [
        click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (pass it to the container)."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-tty (sets TERM=xterm)."),
        click.option("--name", "name", default=None, help="Assign a name to the container."),
        _alias("-name", "name", default=None),
        click.option("-e", "--env", "env", multiple=True, help="Set an environment variable (K=V, or K to copy)."),
        click.option("-w", "--workdir", default=None, help="Working directory inside the container (absolute)."),
        click.option("-u", "--user", default=None, help="Username or UID[:GID] inside the container."),
        click.option("-h", "--hostname", default=None, help="Container host name (host[.domain])."),
        click.option("-v", "--volume", "volumes", multiple=True,
                     help="Bind mount /host:/ctr[:ro|rw], or a fresh volume at /ctr."),
        click.option("-m", "--memory", default=None, help="Memory limit (<number>[b|k|m|g])."),
        click.option("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)."),
        click.option("--entrypoint", default=None, help="Overwrite the image's entrypoint."),
        _alias("-entrypoint", "entrypoint", default=None),
        click.option("--cidfile", default=None, help="Write the container id to this file."),
        _alias("-cidfile", "cidfile", default=None),
        click.option("--link", "links", multiple=True, help="Link to another container (name:alias)."),
        _alias("-link", "links", multiple=True),
        click.option("-p", "--publish", "ports", multiple=True, help="Publish a port (ip:hostPort:containerPort)."),
        click.option("-P", "--publish-all", is_flag=True, help="Publish every exposed port to a random port."),
        click.option("--expose", multiple=True, help="Expose a port without publishing it."),
        _alias("-expose", "expose", multiple=True),
        click.option("--net", "--network", "net", default="bridge", metavar="MODE",
                     help="Networking: bridge (default), none, host (the host's own), container:NAME (another "
                          "running container's) or a user network's name."),
        click.option("--network-alias", "network_aliases", multiple=True, metavar="ALIAS",
                     help="Another name the container has on its user network."),
        click.option("--ip", "ip_address", default=None, metavar="IPV4", help="The address on its user network."),
        click.option("--mac-address", "mac_address", default=None, metavar="MAC", help="The container's MAC address."),
        click.option("--dns", multiple=True, help="Custom DNS server."),
        click.option("--cap-add", "cap_add", multiple=True, metavar="CAP", help="Add a capability (or ALL)."),
        click.option("--cap-drop", "cap_drop", multiple=True, metavar="CAP", help="Drop a capability (or ALL)."),
        click.option("--label", "-l", "labels", multiple=True, metavar="K=V", help="Set metadata on the container."),
        click.option("--tmpfs", multiple=True, metavar="PATH[:OPTIONS]",
                     help="Mount a fresh tmpfs (default options rw,noexec,nosuid,nodev)."),
        click.option("--read-only", "read_only", is_flag=True, help="Mount the container's root filesystem read-only."),
        click.option("--add-host", "extra_hosts", multiple=True, metavar="NAME:IP", help="Add an /etc/hosts line."),
        click.option("--dns-search", "dns_search", multiple=True, metavar="DOMAIN", help="DNS search domain."),
        click.option("--group-add", "group_add", multiple=True, metavar="GROUP",
                     help="Another group for the command (a name in the image's /etc/group, or a gid)."),
        click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]",
                     help="A resource limit, e.g. nofile=1024:2048 (-1: unlimited)."),
        click.option("--volumes-from", "volumes_from", multiple=True, metavar="CONTAINER[:ro|rw]",
                     help="Mount every volume of that container."),
        click.option("--stop-timeout", "stop_timeout", type=int, metavar="SECONDS",
                     help="How long `stop` waits before SIGKILL by default (10)."),
        click.option("--restart", metavar="POLICY",
                     help="no, always, unless-stopped or on-failure[:N]: restart a detached container when "
                          "its command ends (a stop or kill by you leaves it stopped)."),
        click.option("--device", "devices", multiple=True, metavar="HOST[:CONTAINER][:rwm]",
                     help="Give the container a host device node (under /dev in the container)."),
        click.option("--lxc-conf", "lxc_conf", multiple=True, metavar="lxc.KEY=VALUE",
                     help="Add a raw lxc configuration line (after pydock's own, as in Docker 0.7)."),
        click.option("--pids-limit", "pids_limit", type=int, help="At most this many processes (-1: unlimited)."),
        click.option("--cpuset-cpus", "cpuset_cpus", metavar="CPUS", help="The CPUs it may run on, e.g. 0-1,3."),
        click.option("--cpus", metavar="N", help="At most this many CPUs' time, e.g. 1.5."),
        click.option("--env-file", "env_files", multiple=True, type=click.Path(dir_okay=False),
                     help="Read K=V lines (and bare K: copied from here) from a file; -e comes after."),
        click.option("--stop-signal", "stop_signal", metavar="SIGNAL",
                     help="The signal `stop` sends first (default: the image's, else SIGTERM)."),
        click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
                     show_default=True, help="Pull the image before creating the container."),
        _alias("-dns", "dns", multiple=True),
        click.option("--init", "init", is_flag=True,
                     help="Run a reaping init (the host's static tini) as PID 1 in front of the command."),
        click.option("--memory-swap", "memory_swap", metavar="SIZE",
                     help="Memory plus swap (<number>[b|k|m|g]; -1: unlimited swap; default: twice --memory)."),
        click.option("--memory-swappiness", "memory_swappiness", type=int, metavar="0-100",
                     help="How readily the kernel swaps the container's memory (cgroup v1 only)."),
        click.option("--privileged", is_flag=True,
                     help="Every capability and host device, no seccomp, /proc and /sys writable."),
        _alias("-privileged", "privileged", is_flag=True),
        click.option("--log-driver", "log_driver", metavar="DRIVER", help="Logging driver: json-file or none."),
        click.option("--log-opt", "log_opts", multiple=True, metavar="KEY=VALUE",
                     help="json-file options: max-size=SIZE (10k, 10m, 1g), max-file=COUNT."),
        click.option("--security-opt", "security_opt", multiple=True,
                     help="no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json (Docker's format)."),
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def _create_options(image: str, cmd: tuple[str, ...], o: dict[str, Any], auto_remove: bool = False) -> Any:
    """The CreateOptions record of `run`/`create`'s command line."""
    return CreateOptions(
        image=image,
        cmd=cmd or None,
        name=o.get("name") or o.get("name_alias"),
        env=parse_env([*read_env_files(o.get("env_files") or ()), *(o.get("env") or ())], os.environ),
        workdir=o.get("workdir"),
        user=o.get("user"),
        hostname=o.get("hostname"),
        volumes=o.get("volumes") or (),
        memory=o.get("memory"),
        cpu_shares=o.get("cpu_shares"),
        entrypoint=o.get("entrypoint") if o.get("entrypoint") is not None else o.get("entrypoint_alias"),
        cidfile=o.get("cidfile") or o.get("cidfile_alias"),
        links=tuple(o.get("links") or ()) + tuple(o.get("links_alias") or ()),
        ports=o.get("ports") or (),
        publish_all=bool(o.get("publish_all")),
        expose=tuple(o.get("expose") or ()) + tuple(o.get("expose_alias") or ()),
        network={"bridge": True, "default": True, "none": False}.get(o.get("net") or "bridge", o.get("net")),
        network_aliases=o.get("network_aliases") or (),
        ip_address=o.get("ip_address"),
        mac_address=o.get("mac_address"),
        cap_add=o.get("cap_add") or (),
        cap_drop=o.get("cap_drop") or (),
        labels=o.get("labels") or (),
        stop_signal=o.get("stop_signal"),
        tmpfs=o.get("tmpfs") or (),
        read_only=bool(o.get("read_only")),
        extra_hosts=o.get("extra_hosts") or (),
        dns_search=o.get("dns_search") or (),
        group_add=o.get("group_add") or (),
        ulimits=o.get("ulimits") or (),
        pids_limit=o.get("pids_limit"),
        cpuset_cpus=o.get("cpuset_cpus"),
        cpus=o.get("cpus"),
        volumes_from=o.get("volumes_from") or (),
        lxc_conf=o.get("lxc_conf") or (),
        devices=o.get("devices") or (),
        restart=o.get("restart"),
        stop_timeout=o.get("stop_timeout"),
        tty=bool(o.get("tty")),
        stdin_open=bool(o.get("interactive")),
        dns=tuple(o.get("dns") or ()) + tuple(o.get("dns_alias") or ()),
        auto_remove=auto_remove,
        init=bool(o.get("init")),
        security_opt=_security_opt(o.get("security_opt") or ()),
        privileged=bool(o.get("privileged") or o.get("privileged_alias")),
        memory_swap=o.get("memory_swap"),
        memory_swappiness=o.get("memory_swappiness"),
        log_driver=o.get("log_driver"),
        log_opts=o.get("log_opts") or (),
        console_size=_terminal_size() if o.get("tty") else (),
    )


def _terminal_size() -> tuple[int, ...]:
    """This terminal's (rows, columns), which a -t container starts with (as the docker CLI sends it)."""
    from pydock.runtime.terminal import terminal_size  # lazy: only for -t

    return terminal_size(sys.stdout.fileno()) or ()


def _security_opt(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--security-opt` values, a `seccomp=PATH` profile read here and sent as JSON (as the docker CLI does)."""
    if not values:
        return ()
    from pydock.runtime.confinement import read_profile_files  # lazy: only with --security-opt

    return tuple(read_profile_files(values))


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container id.")
@click.option("--rm", "rm", is_flag=True, help="Remove the container when it exits.")
@_alias("-rm", "rm", is_flag=True)
@detach_keys_option
@sig_proxy_option
@_container_options
@click.argument("image")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, detach: bool, rm: bool, rm_alias: bool, detach_keys: str | None, sig_proxy: bool,
        image: str, cmd: tuple[str, ...], **options: Any) -> None:
    """Run a command in a new container; the exit status is the command's (125: pydock failed,
    126: not executable, 127: not found). With -t the container's terminal is this one: its size
    follows, and the detach keys (ctrl-p ctrl-q) leave the container running."""
    rm = rm or rm_alias
    if rm and detach:
        raise InvalidArgument("Conflicting options: --rm and -d")
    if detach_keys:
        from pydock.runtime.detachkeys import parse  # lazy: only with --detach-keys

        parse(detach_keys)  # a bad spelling is refused before anything is made
    opts = _create_options(image, cmd, options, auto_remove=rm)
    if detach:
        opts = dataclasses.replace(opts, stdin_once=False)  # nobody attached: later attaches share stdin
    rt = ctx.obj.runtime()
    _pull_as_asked(ctx, rt, image, options["pull"])
    if detach:
        c = rt.create(opts)
        rt.start(c)
        click.echo(c.id)
        return
    if opts.tty:  # the container's monitor holds the terminal; this process is its first client
        from pydock.cli.interactive import start_attached  # lazy: sockets, the terminal loop

        start_attached(ctx, rt, rt.create(opts), stdin=opts.stdin_open, detach_keys=detach_keys,
                       sig_proxy=sig_proxy)
        return
    stdin = sys.stdin.buffer if opts.stdin_open else None
    code, _out, _err = rt.run(opts, stdin=stdin, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer,
                              proxy_signals=sig_proxy)
    ctx.exit(code)


@click.command(context_settings={"allow_interspersed_args": False})
@_container_options
@click.argument("image")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, cmd: tuple[str, ...], **options: Any) -> None:
    """Create a container (not started) and print its id."""
    opts = _create_options(image, cmd, options)
    rt = ctx.obj.runtime()
    _pull_as_asked(ctx, rt, image, options["pull"])
    c = rt.create(opts)
    click.echo(c.id)


def _pull_as_asked(ctx: click.Context, rt: Any, image: str, policy: str) -> None:
    """Docker's `--pull`: `missing` (the default) pulls an image that is not here first (the built-in
    busybox is built instead), `always` pulls every time, `never` leaves a missing image an error."""
    if policy == "never" or policy == "missing" and (image in BUILT_IN_IMAGES or rt.images.lookup(image)):
        return
    from pydock.cli.registry import ProgressDisplay, pull_reference  # lazy: the distribution client, only for a pull

    if policy == "missing":
        click.echo(f"Unable to find image '{image if ':' in image.rpartition('/')[2] or '@' in image else image + ':latest'}'"
                   " locally", err=True)
    pull_reference(ctx, image, ProgressDisplay(sys.stderr))


def _status(row: Any, paused: bool = False) -> str:
    """STATUS of a listing row (runtime/rows.py): from its record, or its container's live state."""
    if row.container is None:
        st = Status(row.status)
        started = None
    else:
        st = row.container.state.status
        started = row.container.state.started_at
    if st is Status.GHOST:
        return "Ghost"
    if st is Status.RUNNING:
        started = started or utcnow()
        return f"Up {human_duration((utcnow() - started).total_seconds())}" + (" (Paused)" if paused else "")
    if st is Status.CREATED:
        return "Created"
    if st is Status.RESTARTING:
        return f"Restarting ({row.exit_code})"
    return f"Exit {row.exit_code}"


def _ports(ports: dict[str, Any] | None) -> str:
    out = []
    for private, binds in sorted((ports or {}).items()):
        for b in binds or ():
            out.append(f"{b.get('HostIp', '0.0.0.0')}:{b.get('HostPort')}->{private}")
    return ", ".join(out)


def _command(command_line: str, no_trunc: bool) -> str:
    text = command_line if no_trunc else command_line[:COMMAND_WIDTH]  # Docker 0.7's utils.Trunc: cut, no ellipsis
    return f'"{text}"'


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default: running only).")
@click.option("-q", "--quiet", is_flag=True, help="Only show container ids.")
@click.option("-l", "--latest", is_flag=True, help="Only the latest created container.")
@click.option("-n", "last", type=int, default=None, help="Only the N latest created containers.")
@click.option("--no-trunc", "no_trunc", is_flag=True, help="Don't truncate output.")
@_alias("-notrunc", "no_trunc", is_flag=True)
@click.option("-s", "--size", is_flag=True, help="Show sizes.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Only containers that match (status, exited, label, name, id, ancestor, before, since, "
                   "volume, network, publish, expose, is-task).")
@format_option(short=False)
@click.pass_context
def ps(ctx: click.Context, all_: bool, quiet: bool, latest: bool, last: int | None, no_trunc: bool,
       no_trunc_alias: bool, size: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List containers, newest first: CONTAINER ID IMAGE COMMAND CREATED STATUS PORTS NAMES."""
    no_trunc = no_trunc or no_trunc_alias
    rt = ctx.obj.runtime()
    if latest:
        last = 1
    chosen = None
    if filters:
        from pydock.runtime.listfilters import ContainerFilters  # lazy: only with --filter
        from pydock.runtime.usage import parse_filter_flags  # lazy: see above

        chosen = ContainerFilters.parse(rt, parse_filter_flags(filters))
    all_ = all_ or last is not None or (chosen is not None and chosen.implies_all)
    table = not fmt or fmt.strip() == "table"
    if chosen is None and table and not size:  # the plain listing: rows, no Container each
        rows = rt.container_rows(all=all_)
    else:
        from pydock.runtime.rows import row_of  # lazy: only listings that need whole containers

        containers = rt.containers(all=all_)
        if chosen is not None:
            every = rt.names.names_by_id()
            containers = [c for c in containers
                          if chosen.match(rt, c, every.get(c.id, []), c.state.running and rt.paused(c))]
        rows = [row_of(c) for c in containers]
    if last is not None:
        rows = rows[:max(last, 0)]

    if quiet:
        if rows:
            click.echo("\n".join(r.id if no_trunc else r.short_id for r in rows))
        return
    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    if size:
        headers.append("SIZE")
    cells = []
    image_names: dict[str, str] = {}
    try:
        every_name = rt.names.names_by_id()  # one read of the name graph for all the rows
    except PydockError as err:
        log.debug("ps: names unreadable (%s); asking per container", err)
        every_name = None
    now_us = epoch_us(utcnow())
    settled: dict[tuple[str, int], str] = {}  # STATUS of rows that carry no container, by (status, exit code)
    for r in rows:
        c = r.container
        image = image_names.get(r.image)
        if image is None:
            try:
                image = rt.images.name_of(r.image)
            except PydockError as err:  # a missing image must not break ps
                log.debug("ps: image %s of %s: %s", r.image[:12], r.short_id, err)
                image = r.image[:12]
            image_names[r.image] = image
        if c is None:
            paused = False
            status = settled.get((r.status, r.exit_code))
            if status is None:
                status = settled[r.status, r.exit_code] = _status(r)
        else:
            paused = c.state.running and rt.paused(c)
            status = _status(r, paused)
        paths = every_name.get(r.id, ()) if every_name is not None else rt.names_of(r)
        row = [r.id if no_trunc else r.short_id, image, _command(r.command_line, no_trunc),
               ago_us(r.created_us, now_us), status, _ports(r.ports), ",".join([p[1:] for p in paths])]
        if size or (fmt and ".Size" in fmt):
            row.append(_size(rt, c))
        cells.append(row if table else _ps_context(c, row, paused))
    if not table:
        print_items(fmt, cells, PS_HEADERS)
        return
    click.echo(plain_table(cells, headers))


#: the header each field of `ps --format 'table ...'` gets (the docker CLI's)
PS_HEADERS: dict[str, Any] = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES",
              "Label": lambda key: key.split(".")[-1].replace("-", " ").replace("_", " ")}


def _ps_context(c: Any, row: list[str], paused: bool) -> dict[str, Any]:
    """One container as `ps --format` sees it: the docker CLI's field names over the columns ps prints
    (the image as the user named it, as current Docker shows it, where the table keeps 0.7's repo:tag)."""
    from pydock.runtime.listfilters import network_name  # lazy: only with --format

    labels = c.config.get("Labels") or {}
    mounts = sorted(c.volumes)
    return {"ID": row[0], "Image": c.config.get("Image") or row[1], "Command": row[2], "CreatedAt": go_time(c.created),
            "RunningFor": row[3], "Status": row[4], "Ports": row[5], "Names": row[6],
            "Size": row[7] if len(row) > 7 else "", "State": c.state.docker_status(paused),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "Mounts": ",".join(mounts), "LocalVolumes": str(len(mounts)),
            "Networks": network_name(c),
            "Label": lambda key: str(labels.get(key, ""))}


def _size(rt: Any, c: Any) -> str:
    try:
        rw, virtual = rt.size(c)
    except PydockError as err:  # e.g. removed meanwhile: an empty cell, not a failed listing
        log.debug("ps -s: size of %s unknown: %s", c.short_id, err)
        return ""
    return f"{human_size(rw)} (virtual {human_size(virtual)})"


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", is_flag=True, help="Remove the volumes created for the container.")
@click.option("-l", "--link", is_flag=True, help="Remove the link NAME (/parent/alias), not the container.")
@_alias("-link", "link", is_flag=True)
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, volumes: bool, link: bool, link_alias: bool, refs: tuple[str, ...]) -> None:
    """Remove containers (their devices, names and files); echoes each argument removed."""
    rt = ctx.obj.runtime()
    link = link or link_alias

    def one(ref: str) -> None:
        if link:
            rt.remove_link(ref)
        else:
            rt.remove(rt.get(ref), force=force, volumes=volumes)

    each(refs, one, "failed to remove one or more containers")


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach stdout/stderr and exit with the container's status.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin (the container must have been made with -i).")
@detach_keys_option
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def start(ctx: click.Context, attach: bool, interactive: bool, detach_keys: str | None, refs: tuple[str, ...]) -> None:
    """Start stopped containers; with -a, stay attached to one until it ends (or the detach keys)."""
    rt = ctx.obj.runtime()
    if attach or interactive:
        if len(refs) != 1:
            raise InvalidArgument("You cannot start and attach multiple containers at once.")
        from pydock.cli.interactive import join_running, start_attached  # lazy: sockets, the terminal loop

        c = rt.get(refs[0])
        if c.state.running:  # as Docker: attach to it
            join_running(ctx, rt, c, stdin=interactive, detach_keys=detach_keys, sig_proxy=True, on_detach="quiet")
        start_attached(ctx, rt, c, stdin=interactive, detach_keys=detach_keys, sig_proxy=True)
        return
    each(refs, lambda ref: rt.start(rt.get(ref)), "failed to start one or more containers")


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None,
              help="Seconds to wait for the stop before killing it (default: the container's --stop-timeout, else 10).")
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, timeout: int | None, refs: tuple[str, ...]) -> None:
    """Stop running containers: SIGTERM, then SIGKILL after the timeout."""
    rt = ctx.obj.runtime()
    each(refs, lambda ref: rt.stop(rt.get(ref), timeout), "failed to stop one or more containers")


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None,
              help="Seconds to wait for the stop before killing it (default: the container's --stop-timeout, else 10).")
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def restart(ctx: click.Context, timeout: int | None, refs: tuple[str, ...]) -> None:
    """Stop (if running) and start containers again."""
    rt = ctx.obj.runtime()
    each(refs, lambda ref: rt.restart(rt.get(ref), timeout), "failed to restart one or more containers")


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal to send.")
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def kill(ctx: click.Context, sig: str, refs: tuple[str, ...]) -> None:
    """Send a signal (default KILL) to running containers."""
    rt = ctx.obj.runtime()
    signum = parse_signal(sig)
    each(refs, lambda ref: rt.kill(rt.get(ref), signum), "failed to kill one or more containers")


@click.command()
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Block until containers stop; print their exit codes."""
    rt = ctx.obj.runtime()
    each(refs, lambda ref: str(rt.wait(rt.get(ref))), "failed to wait for one or more containers")


def _stream(records: Any, timestamps: bool) -> None:
    out = click.get_binary_stream("stdout")
    err = click.get_binary_stream("stderr")
    for rec in records:
        text = rec.log
        if timestamps and rec.time is not None:
            text = f"{format_time(rec.time)} {text}"
        sink = err if rec.stream == "stderr" else out
        sink.write(text.encode("utf-8", "surrogateescape"))
        sink.flush()


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the container stops.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.argument("ref", metavar="CONTAINER")
@click.pass_context
def logs(ctx: click.Context, follow: bool, timestamps: bool, ref: str) -> None:
    """Replay a container's stdout and stderr (to stdout and stderr)."""
    rt = ctx.obj.runtime()
    _stream(rt.logs(rt.get(ref), follow=follow), timestamps)


@click.command()
@format_option(short=True)
@click.argument("refs", metavar="CONTAINER|IMAGE...", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Low-level information as a JSON array (4-space indent), or each through a Go template (-f)."""
    rt = ctx.obj.runtime()
    found: list[Any] = []
    failed = False
    for ref in refs:
        try:
            c = rt.get(ref)
            found.append(rt.inspect(c) if fmt is None else _api_document(rt, c))
            continue
        except NotFound:
            pass
        try:
            found.append(rt.images.inspect(ref) if fmt is None else _api_document(rt, rt.images.get(ref)))
        except PydockError:
            click.echo(f"Error: No such image or container: {ref}", err=True)
            failed = True
    if fmt is not None:
        print_each(fmt, found)
    else:
        click.echo(json.dumps(found, indent=4))
    if failed:
        ctx.exit(1)


def _api_document(rt: Any, item: Any) -> dict[str, Any]:
    """What `docker inspect` shows of a container or an image (the Engine API's shape, which every
    `-f` template is written for), where plain `pydock inspect` keeps Docker 0.7's JSON."""
    from pydock.runtime.api import containers, images  # lazy: only for inspect -f
    from pydock.runtime.container import Container  # lazy: see above

    if isinstance(item, Container):
        return containers.inspect_document(rt, item)
    return images.inspect_document(rt, item)


@click.command()
@click.argument("ref", metavar="CONTAINER")
@click.pass_context
def top(ctx: click.Context, ref: str) -> None:
    """The processes running in a container (host view, `ps -f` columns)."""

    rt = ctx.obj.runtime()
    header, rows = rt.top(rt.get(ref))
    click.echo(plain_table(rows, header))


@click.command()
@click.argument("ref", metavar="CONTAINER")
@click.pass_context
def diff(ctx: click.Context, ref: str) -> None:
    """Changes to the container's filesystem: `A|C|D /path`."""
    rt = ctx.obj.runtime()
    for change in rt.diff(rt.get(ref)):
        click.echo(str(change))


@click.command()
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-a", "--author", default="", help="Author (e.g. 'Jane <jane@example.com>').")
@click.option("--run", "run_json", default=None, help='Config to merge, as JSON (e.g. {"Cmd": ["cat"]}).')
@_alias("-run", "run_json", default=None)
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help="Apply a Dockerfile instruction to the image's config (CMD, ENV, EXPOSE, ...).")
@click.option("-p", "--pause", type=click.BOOL, default=True, show_default=True,
              help="Freeze a running container while its changes are read.")
@click.argument("ref", metavar="CONTAINER")
@click.argument("reference", metavar="[REPOSITORY[:TAG]]", required=False)
@click.pass_context
def commit(ctx: click.Context, message: str, author: str, run_json: str | None, run_json_alias: str | None,
           changes: tuple[str, ...], pause: bool, ref: str, reference: str | None) -> None:
    """Create an image from a container's changes; prints the new image's full id."""
    run_json = run_json or run_json_alias
    config = None
    if run_json:
        try:
            config = json.loads(run_json)
        except ValueError as err:
            raise InvalidArgument(f"Invalid --run JSON: {err}") from None
        if not isinstance(config, dict):
            raise InvalidArgument("Invalid --run JSON: expected an object")
    repo = tag = None
    if reference:
        from pydock.graph.tags import split_reference  # lazy: the image graph, only for commit

        repo, tag = split_reference(reference)
    rt = ctx.obj.runtime()
    image = rt.commit(rt.get(ref), repo, tag, comment=message, author=author, config=config, changes=changes,
                      pause=pause)
    click.echo(image.id)


@click.command()
@click.argument("ref", metavar="CONTAINER")
@click.pass_context
def export(ctx: click.Context, ref: str) -> None:
    """Write the container's filesystem as a tar archive to stdout."""
    out = click.get_binary_stream("stdout")
    if out.isatty():
        raise InvalidArgument("Refusing to write a tar archive to a terminal: redirect stdout")
    rt = ctx.obj.runtime()
    rt.export(rt.get(ref), out)
    out.flush()


@click.command()
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Freeze every process of running containers."""
    rt = ctx.obj.runtime()
    each(refs, lambda ref: rt.pause(rt.get(ref)), "failed to pause one or more containers")


@click.command()
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def unpause(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    rt = ctx.obj.runtime()
    each(refs, lambda ref: rt.unpause(rt.get(ref)), "failed to unpause one or more containers")


@click.command()
@click.argument("ref", metavar="CONTAINER")
@click.argument("new_name", metavar="NEW_NAME")
@click.pass_context
def rename(ctx: click.Context, ref: str, new_name: str) -> None:
    """Give a container another name (links to it follow)."""
    rt = ctx.obj.runtime()
    rt.rename(rt.get(ref), new_name)


def _binary_size(size: float) -> str:
    """Docker's memory figures: 1.5MiB (powers of 1024)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.4g}TiB"


@click.command()
@click.option("--no-stream", "no_stream", is_flag=True, help="Print one reading and exit.")
@click.argument("refs", metavar="[CONTAINER...]", nargs=-1)
@click.pass_context
def stats(ctx: click.Context, no_stream: bool, refs: tuple[str, ...]) -> None:
    """Live resource use of running containers (all of them without names): CPU, memory, network and
    block I/O, processes. Each reading covers one second."""
    from pydock.runtime.stats import cpu_percent  # lazy: only stats

    rt = ctx.obj.runtime()
    containers = [rt.get(ref) for ref in refs] if refs else [c for c in rt.containers() if c.state.running]
    header = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")
    before = {c.id: _reading(rt, c, bool(refs)) for c in containers}
    while True:
        time.sleep(1.0)  # the interval CPU % is measured over
        rows = []
        for c in containers:
            now = _reading(rt, c, bool(refs))
            prev = before.get(c.id)
            before[c.id] = now
            if now is None or prev is None:
                continue
            name = (rt.names_of(c) or [c.name])[0].lstrip("/")
            rows.append((c.short_id, name, f"{cpu_percent(prev, now):.2f}%",
                         f"{_binary_size(now.mem_usage)} / {_binary_size(now.mem_limit)}", f"{now.mem_percent:.2f}%",
                         f"{human_size(now.net_rx)} / {human_size(now.net_tx)}",
                         f"{human_size(now.blk_read)} / {human_size(now.blk_write)}", str(now.pids)))
        if not no_stream:
            click.echo("\033[2J\033[H", nl=False)
        click.echo(plain_table(rows, header))
        if no_stream:
            return


def _reading(rt: Any, c: Any, named: bool) -> Any:
    try:
        return rt.stats(c)
    except PydockError as err:
        if named and not rt.get(c.id).state.running:
            raise
        log.debug("no stats for %s: %s", c.short_id, err)
        return None



@click.command()
@click.option("-m", "--memory", default=None, help="Memory limit (<number>[b|k|m|g]).")
@click.option("--memory-swap", "memory_swap", default=None, help="Memory plus swap (-1: unlimited swap).")
@click.option("--cpus", default=None, metavar="N", help="At most this many CPUs' time, e.g. 1.5.")
@click.option("-c", "--cpu-shares", "cpu_shares", type=int, default=None, help="CPU shares (relative weight).")
@click.option("--cpuset-cpus", "cpuset_cpus", default=None, metavar="CPUS", help="The CPUs it may run on.")
@click.option("--pids-limit", "pids_limit", type=int, default=None, help="At most this many processes (-1: unlimited).")
@click.option("--restart", default=None, metavar="POLICY", help="no, always, unless-stopped, on-failure[:N].")
@click.argument("refs", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_context
def update(ctx: click.Context, refs: tuple[str, ...], **changes: Any) -> None:
    """Change containers' resource limits and restart policy, running or not (the next start keeps them)."""
    from pydock.runtime.update import UpdateOptions  # lazy: only for update

    rt = ctx.obj.runtime()
    opts = UpdateOptions(**changes)
    if opts.empty():
        raise click.UsageError("You must provide one or more flags when using this command.")

    def one(ref: str) -> None:
        rt.update(rt.get(ref), opts)  # Docker's warnings: pydock has none

    each(refs, one, "failed to update one or more containers")


@click.group(context_settings={"help_option_names": ["--help"]})
def container() -> None:
    """Manage containers (`container prune`; the other container commands are top-level, as in Docker 0.7)."""


@container.command(name="prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="until=TIME|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE].")
@click.pass_context
def prune_containers(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove every container that is not running (and matches the filters)."""
    from pydock.runtime.usage import PruneFilters, parse_filter_flags  # lazy: only for prune
    from pydock.runtime.usage import prune_containers as prune  # lazy: only for prune

    chosen = PruneFilters.parse(parse_filter_flags(filters))
    if not force:
        click.confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
                      abort=True)
    removed, freed = prune(ctx.obj.runtime(), chosen)
    if removed:
        click.echo("Deleted Containers:\n" + "".join(f"{cid}\n" for cid in removed))
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@click.command()
@click.pass_context
def boot(ctx: click.Context) -> None:
    """Start the containers a restarted Docker daemon would: restart policy `always`, or `unless-stopped`
    and not stopped by a user (the .deb's pydock.service runs this at boot). Exit 1 if any failed."""
    from pydock.runtime.restart import start_at_boot  # lazy: only at boot

    failed = False
    for cid, error in start_at_boot(ctx.obj.runtime()):
        if error is None:
            click.echo(cid)
        else:
            failed = True
            click.echo(f"Error: {cid[:12]}: {error}", err=True)
    if failed:
        ctx.exit(1)


container.add_command(update)
