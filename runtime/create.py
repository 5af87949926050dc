"""Making a container from CreateOptions: checks, its Config/HostConfig, name, links, init layer and
device, files. All or nothing: any failure takes apart what was made."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydock.links.linking import assign_name, register_links
from pydock.links.ports import parse_port, parse_publish
from pydock.runtime import confinement, etcfiles, monitorlock, removal
from pydock.runtime.container import Container
from pydock.runtime.jsonlog import create_log
from pydock.runtime.options import CreateOptions, Volume, merge_env, parse_env, parse_memory, parse_volume, \
    split_hostname
from pydock.runtime.rootpath import check_workdir
from pydock.utils.errors import Conflict, InvalidArgument
from pydock.utils.fileutil import atomic_write
from pydock.utils.ids import generate_id

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime


def create_container(rt: Runtime, opts: CreateOptions) -> Container:
    """Make a container (not started) as Docker 0.7's `create` does."""
    memory_bytes = parse_memory(opts.memory)
    if opts.cpu_shares is not None and opts.cpu_shares < 0:
        raise InvalidArgument("CPU shares must be a positive number")
    workdir = check_workdir(opts.workdir) if opts.workdir else opts.workdir
    dns = etcfiles.check_dns(opts.dns)
    host, domain = split_hostname(opts.hostname)
    vols = [parse_volume(v) for v in opts.volumes]
    user_env = parse_env(list(opts.env))
    confinement.parse(opts.security_opt)  # refuse what can't be honoured before anything is made
    if opts.cidfile and os.path.exists(opts.cidfile):
        raise Conflict(f"Container ID file found, make sure the other container isn't running or delete {opts.cidfile}")
    img = rt.images.resolve(opts.image)
    rt.graph.check_depth(img)
    img_cfg = dict(img.config or {})
    given = {v.target for v in vols}  # the image's VOLUMEs become anonymous volumes unless -v names them
    vols += [v for v in map(parse_volume, sorted(img_cfg.get("Volumes") or {})) if v.target not in given]
    if workdir is None and img_cfg.get("WorkingDir"):
        workdir = check_workdir(str(img_cfg["WorkingDir"]))  # the image's is checked like the user's
    ep, command = merge_command(img_cfg, opts.entrypoint, opts.cmd)
    if not ep + command:
        raise InvalidArgument("No command specified")
    exposed: dict[str, dict] = dict(img_cfg.get("ExposedPorts") or {})
    for spec in opts.expose:
        exposed[str(parse_port(spec))] = {}
    for spec in opts.ports:
        exposed[str(parse_publish(spec).port)] = {}
    cid = generate_id()
    cdir = rt.layout.container(cid)
    cdir.mkdir(mode=0o700)
    config = {
        "Hostname": host or cid[:12], "Domainname": domain,
        "User": opts.user if opts.user is not None else img_cfg.get("User", ""),
        "Memory": memory_bytes or 0, "MemorySwap": 0, "CpuShares": opts.cpu_shares or 0,
        "AttachStdin": opts.stdin_open, "AttachStdout": True, "AttachStderr": True, "PortSpecs": None,
        "ExposedPorts": exposed or None, "Tty": opts.tty, "OpenStdin": opts.stdin_open,
        "StdinOnce": opts.stdin_open if opts.stdin_once is None else opts.stdin_once,
        "Env": merge_env(list(img_cfg.get("Env") or []), user_env),
        "Cmd": command, "Dns": list(dns) or None, "Image": opts.image,
        "Volumes": {v.target: {} for v in vols} or None, "VolumesFrom": "",
        "WorkingDir": workdir if workdir is not None else img_cfg.get("WorkingDir", ""),
        "Entrypoint": ep or None, "NetworkDisabled": not opts.network,
        "Labels": dict(img_cfg.get("Labels") or {}), "StopSignal": img_cfg.get("StopSignal") or None,
    }
    hostconfig = {"Binds": [spec for spec in opts.volumes if ":" in spec] or None,
                  "ContainerIDFile": opts.cidfile or "", "LxcConf": None, "Privileged": False,
                  "PortBindings": {}, "PortSpecs": list(opts.ports), "Links": list(opts.links) or None,
                  "PublishAllPorts": opts.publish_all, "AutoRemove": opts.auto_remove,
                  "Init": True if opts.init else None, "SecurityOpt": list(opts.security_opt) or None}
    argv = ep + command
    c = Container(id=cid, dir=cdir, image=img.id, path=argv[0], args=argv[1:], config=config,
                  hostconfig=hostconfig, driver=rt.driver.name)
    made: list[str] = []
    try:
        c.name = assign_name(rt.names, cid, opts.name)
        made.append("name")
        _make_devices(rt, c, img.id, made)
        c.volumes, c.volumes_rw = _make_volumes(rt, vols)
        if opts.links:
            register_links(rt.names, c.name, cid, opts.links, resolve=lambda n: rt.get(n).id,
                           is_running=lambda i: rt.load(i).state.running)
        atomic_write(c.hostname_path, (config["Hostname"] + "\n").encode(), 0o644, durable=False)
        atomic_write(c.resolv_conf_path, etcfiles.resolv_conf(dns).encode(), 0o644, durable=False)
        create_log(c.log_path)
        monitorlock.create(c.monitor_lock_path)
        c.save()
        if opts.cidfile:
            with open(opts.cidfile, "x") as f:
                f.write(cid)
    except BaseException:
        removal.destroy(rt, c, made)
        raise
    return c


def _make_devices(rt: Runtime, c: Container, image_id: str, made: list[str]) -> None:
    """`<id>-init` (stubs for mount points) on the image, then `<id>` on the init layer."""
    rt.driver.create(c.init_id, image_id)
    made.append("init")
    with rt.driver.mounted(c.init_id) as root:
        etcfiles.write_init_layer(root)
    rt.driver.set_initialized(c.init_id)
    rt.driver.create(c.id, c.init_id)
    made.append("device")


def _make_volumes(rt: Runtime, vols: list[Volume]) -> tuple[dict[str, str], dict[str, bool]]:
    """(container path -> host dir, container path -> writable): anonymous volumes are made fresh.

    `volumes/` is 0700 like `containers/` (no host user reaches a volume's contents); each volume is
    0755 like Docker's `_data`, so the container's own non-root users can enter it.
    """
    paths: dict[str, str] = {}
    rw: dict[str, bool] = {}
    for v in vols:
        if v.source is None:
            _private_dir(rt.layout.volumes)
            source = rt.layout.volumes / generate_id()
            source.mkdir(mode=0o700)
            os.chmod(source, 0o755)  # exactly, whatever the umask
        else:
            source = Path(v.source)
            source.mkdir(parents=True, exist_ok=True)
        paths[v.target] = str(source)
        rw[v.target] = not v.readonly
    return paths, rw


def _private_dir(path: Path) -> None:
    """Make `path` 0700 (root only), or make an existing one so."""
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def merge_command(img_cfg: dict[str, Any], entrypoint: str | Sequence[str] | None,
                  cmd: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(Entrypoint, Cmd) from the user's and the image's. The user's replace the image's; an explicit
    entrypoint without a command drops the image's Cmd (it was written for the image's entrypoint)."""
    if entrypoint is None:
        ep = list(img_cfg.get("Entrypoint") or [])
    elif isinstance(entrypoint, str):
        ep = [entrypoint] if entrypoint else []
    else:
        ep = list(entrypoint)
    if cmd:
        return ep, list(cmd)
    if entrypoint is not None and ep:
        return ep, []
    return ep, list(img_cfg.get("Cmd") or [])
