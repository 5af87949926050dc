"""Making a container from CreateOptions: checks, its Config/HostConfig, name, links, init layer and
device, files. All or nothing: any failure takes apart what was made."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydock.links.linking import assign_name, register_links
from pydock.links.ports import parse_port, parse_publish
from pydock.runtime import caps, cgroups, confinement, etcfiles, initlayer, lxcconf, monitorlock, removal
from pydock.runtime.container import Container
from pydock.runtime.jsonlog import create_log
from pydock.runtime.options import CreateOptions, Volume, check_memory_swap, merge_env, parse_env, parse_labels, \
    parse_log_config, parse_memory_swap, parse_memory, parse_tmpfs, parse_ulimit, parse_volume, split_hostname
from pydock.runtime.restart import RestartPolicy
from pydock.runtime.rootpath import check_workdir
from pydock.runtime.volumes import copy_up
from pydock.utils.errors import Conflict, InvalidArgument
from pydock.utils.fileutil import atomic_write, write_new
from pydock.utils.ids import generate_id
from pydock.utils.signals import parse_signal

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime


def create_container(rt: Runtime, opts: CreateOptions) -> Container:
    """Make a container (not started) as Docker 0.7's `create` does."""
    memory_bytes = parse_memory(opts.memory)
    swap = memory_swap(memory_bytes or 0, opts.memory_swap, opts.memory_swappiness)
    if opts.cpu_shares is not None and opts.cpu_shares < 0:
        raise InvalidArgument("CPU shares must be a positive number")
    workdir = check_workdir(opts.workdir) if opts.workdir else opts.workdir
    dns = etcfiles.check_dns(opts.dns)
    host, domain = split_hostname(opts.hostname)
    vols = [parse_volume(v) for v in opts.volumes]
    net_mode = network_mode(rt, opts)
    mac = _network_fields(opts, net_mode)
    caps.resolve(opts.cap_add, opts.cap_drop)  # unknown names refused before anything is made
    tmpfs = {parse_tmpfs(spec)[0]: spec.partition(":")[2] for spec in opts.tmpfs}
    ulimits = [parse_ulimit(spec).to_json() for spec in opts.ulimits]
    cpuset = cgroups.parse_cpuset(opts.cpuset_cpus) if opts.cpuset_cpus else ""
    nano_cpus = cgroups.parse_cpus(opts.cpus) if opts.cpus not in (None, "", 0) else 0
    if opts.pids_limit is not None and opts.pids_limit < -1:
        raise InvalidArgument(f"Invalid PIDs limit {opts.pids_limit}: a count, or 0 or -1 for unlimited")
    for spec in opts.extra_hosts:
        etcfiles.check_extra_host(spec)
    etcfiles.check_dns_search(opts.dns_search)
    for group in opts.group_add:
        if not group or ":" in group or "\n" in group:
            raise InvalidArgument(f"Invalid group {group!r} for --group-add")
    user_env = parse_env(list(opts.env))
    if opts.stop_signal is not None:
        parse_signal(opts.stop_signal)
    labels = parse_labels(opts.labels)
    confinement.parse(opts.security_opt)  # refuse what can't be honoured before anything is made
    if opts.cidfile and os.path.exists(opts.cidfile):
        raise Conflict(f"Container ID file found, make sure the other container isn't running or delete {opts.cidfile}")
    img = rt.images.resolve(opts.image)
    rt.graph.check_depth(img)
    img_cfg = dict(img.config or {})
    shared = _volumes_from(rt, opts.volumes_from)
    lxc_conf = [{"Key": k, "Value": v} for k, v in map(lxcconf.parse_lxc_conf, opts.lxc_conf)]
    devices = [cgroups.parse_device(spec).to_json() for spec in opts.devices]
    policy = RestartPolicy.parse(opts.restart)
    log_config = parse_log_config(opts.log_driver, opts.log_opts)
    if opts.stop_timeout is not None and opts.stop_timeout < 0:
        raise InvalidArgument(f"invalid --stop-timeout {opts.stop_timeout}: seconds, 0 or more")
    if policy.restarts and opts.auto_remove:
        raise InvalidArgument("Conflicting options: --restart and --rm")
    given = {v.target for v in vols}
    for target in given & set(shared):
        raise InvalidArgument(f"Duplicate mount point: {target}")
    given |= set(shared)  # the image's VOLUMEs become anonymous volumes unless -v or --volumes-from names them
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
        "Hostname": host or _default_hostname(rt, net_mode) or cid[:12], "Domainname": domain,
        "User": opts.user if opts.user is not None else img_cfg.get("User", ""),
        "Memory": memory_bytes or 0, "MemorySwap": swap, "CpuShares": opts.cpu_shares or 0,
        "AttachStdin": opts.stdin_open, "AttachStdout": True, "AttachStderr": True, "PortSpecs": None,
        "ExposedPorts": exposed or None, "Tty": opts.tty, "OpenStdin": opts.stdin_open,
        "StdinOnce": opts.stdin_open if opts.stdin_once is None else opts.stdin_once,
        "Env": merge_env(list(img_cfg.get("Env") or []), user_env, keep_unset=True),
        "Cmd": command, "Dns": list(dns) or None, "Image": opts.image,
        "Volumes": {v.target: {} for v in vols} or None, "VolumesFrom": "",
        "WorkingDir": workdir if workdir is not None else img_cfg.get("WorkingDir", ""),
        "Entrypoint": ep or None, "NetworkDisabled": net_mode == "none",
        "Labels": {**(img_cfg.get("Labels") or {}), **labels},
        "StopSignal": opts.stop_signal or img_cfg.get("StopSignal") or None,
        "StopTimeout": opts.stop_timeout,
    }
    if opts.mac_address:
        config["MacAddress"] = mac
    hostconfig = {"Binds": [spec for spec in opts.volumes if ":" in spec] or None,
                  "ContainerIDFile": opts.cidfile or "", "LxcConf": lxc_conf or None, "Privileged": opts.privileged,
                  "PortBindings": {}, "PortSpecs": list(opts.ports), "Links": list(opts.links) or None,
                  "NetworkMode": net_mode, "CapAdd": list(opts.cap_add) or None,
                  "CapDrop": list(opts.cap_drop) or None, "Tmpfs": tmpfs or None,
                  "ReadonlyRootfs": opts.read_only, "ExtraHosts": list(opts.extra_hosts) or None,
                  "DnsSearch": list(opts.dns_search) or None, "GroupAdd": list(opts.group_add) or None,
                  "Ulimits": ulimits or None, "PidsLimit": opts.pids_limit if opts.pids_limit else None,
                  "CpusetCpus": cpuset, "NanoCpus": nano_cpus,
                  "PublishAllPorts": opts.publish_all, "AutoRemove": opts.auto_remove,
                  "Init": True if opts.init else None, "SecurityOpt": list(opts.security_opt) or None,
                  "VolumesFrom": list(opts.volumes_from) or None, "Devices": devices,
                  "RestartPolicy": policy.to_json(), "LogConfig": log_config,
                  "ConsoleSize": [int(n) for n in opts.console_size] if opts.console_size else None,
                  "MemorySwappiness": opts.memory_swappiness if opts.memory_swappiness not in (None, -1) else None}
    argv = ep + command
    c = Container(id=cid, dir=cdir, image=img.id, path=argv[0], args=argv[1:], config=config,
                  hostconfig=hostconfig, driver=rt.driver.name)
    made: list[str] = []
    try:
        c.name = assign_name(rt.names, cid, opts.name)
        made.append("name")
        if user_network(net_mode):  # a member from now on: its address comes when it starts
            rt.user_networks.connect(net_mode, cid, c.name.lstrip("/"), aliases=opts.network_aliases,
                                     ip=opts.ip_address or "", mac=mac)
        _make_devices(rt, c, img.id, made)
        c.volumes, c.volumes_rw = _make_volumes(rt, c, vols, made)
        for target, (source, writable) in shared.items():
            c.volumes[target], c.volumes_rw[target] = source, writable
        if opts.links:
            register_links(rt.names, c.name, cid, opts.links, resolve=lambda n: rt.get(n).id,
                           is_running=lambda i: rt.load(i).state.running)
        atomic_write(c.hostname_path, (config["Hostname"] + "\n").encode(), 0o644, durable=False)
        atomic_write(c.resolv_conf_path, etcfiles.resolv_conf(dns, opts.dns_search).encode(), 0o644, durable=False)
        create_log(c.log_path, log_config)
        monitorlock.create(c.monitor_lock_path)
        c.save()
        if opts.cidfile:
            with open(opts.cidfile, "x") as f:
                f.write(cid)
    except BaseException:
        removal.destroy(rt, c, made)
        raise
    return c


def memory_swap(memory: int, value: str | int | None, swappiness: int | None = None) -> int:
    """Config.MemorySwap for `--memory-swap` (checked as Docker checks it): as given, or by default twice
    the memory limit where the kernel accounts swap (Docker's default; 0 without a memory limit)."""
    swap = parse_memory_swap(value)
    supported = cgroups.swap_limit_supported() if swap is not None or memory else False
    check_memory_swap(memory, swap, swappiness, swap_supported=supported,
                      swappiness_supported=cgroups.swappiness_supported())
    if swap is None:
        return 2 * memory if memory and supported else 0
    return swap


def _make_devices(rt: Runtime, c: Container, image_id: str, made: list[str]) -> None:
    """`<id>` on the image's init layer (stubs for mount points, made with the image's first container),
    which the container's `init-layer` file names first. A `--rm` container's device is a scratch device:
    as its files (Container.save), it need not survive a crash, which its removal by crash recovery
    follows anyway."""
    durable = not c.auto_remove
    init = initlayer.ensure(rt, image_id)
    write_new(c.init_layer_path, init.encode(), durable=durable)
    rt.driver.create(c.id, init, durable=durable)
    made.append("device")


def _volumes_from(rt: Runtime, specs: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """`--volumes-from CONTAINER[:ro|rw]`: container path -> (host path, writable) of every volume and
    bind of those containers (their own mode unless `:ro`/`:rw` says otherwise), as Docker 0.7 did."""
    out: dict[str, tuple[str, bool]] = {}
    for spec in specs:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"Invalid mode for --volumes-from {spec}: use ro or rw")
        source = rt.get(ref)
        for target, path in source.volumes.items():
            if target in out and out[target][0] != path:
                raise InvalidArgument(f"Duplicate mount point: {target}")
            writable = source.volumes_rw.get(target, True) if not mode else mode == "rw"
            out[target] = (path, writable)
    return out


def _make_volumes(rt: Runtime, c: Container, vols: list[Volume],
                  made: list[str]) -> tuple[dict[str, str], dict[str, bool]]:
    """(container path -> host dir, container path -> writable). Anonymous volumes are made fresh, named
    ones when missing; each new or empty one gets the image's content at its mount point (copy-up).
    The anonymous ones made are listed in `made` so a failed create removes them."""
    paths: dict[str, str] = {}
    rw: dict[str, bool] = {}
    fill: list[tuple[str, Path]] = []
    for v in vols:
        if v.name is not None:
            source = rt.volumes.create(v.name)[0].mountpoint
            fill.append((v.target, source))
        elif v.source is None:
            source = rt.volumes.anonymous()
            made.append(f"volume:{source}")
            fill.append((v.target, source))
        else:
            source = Path(v.source)
            source.mkdir(parents=True, exist_ok=True)
        paths[v.target] = str(source)
        rw[v.target] = not v.readonly
    fill = [(target, source) for target, source in fill if not any(source.iterdir())]
    if fill:
        with rt.driver.mounted(c.id, readonly=True) as rootfs:
            for target, source in fill:
                copy_up(rootfs, target, source)
    return paths, rw


def network_mode(rt: Runtime, opts: CreateOptions) -> str:
    """`--net` as HostConfig.NetworkMode: default (the bridge), none, host (the host's own network
    namespace) or container:<id> (another container's). What cannot go with a shared namespace is
    refused with Docker's messages."""
    value = opts.network
    if value is True or value in ("bridge", "default"):
        return "default"
    if value is False or value == "none":
        return "none"
    kind = "host" if value == "host" else "container" if isinstance(value, str) and value.startswith("container:") \
        else None
    if kind is None:
        if not isinstance(value, str) or not value:
            raise InvalidArgument(f"network {value} not found")
        name = rt.user_networks.get(value).name  # NotFound: "network X not found", as Docker says
        if opts.links:
            raise InvalidArgument("--link is only supported on the default bridge network (containers on a user "
                                  "network reach each other by name; use --network-alias)")
        return name
    if opts.ports or opts.publish_all:
        raise InvalidArgument(f"Conflicting options: port publishing and the {kind} network mode")
    if opts.links:
        raise InvalidArgument(f"Conflicting options: {kind} type networking can't be used with links. "
                              "This would result in undefined behavior")
    if kind == "host":
        return "host"
    if opts.hostname:
        raise InvalidArgument("Conflicting options: hostname and the network mode")
    if opts.dns:
        raise InvalidArgument("Conflicting options: dns and the network mode")
    ref = str(value).partition(":")[2]
    if not ref:
        raise InvalidArgument("Invalid network mode: invalid container format container:<name|id>")
    return "container:" + rt.get(ref).id


def user_network(net_mode: str) -> bool:
    """HostConfig.NetworkMode names a user network (not default, none, host or container:X)."""
    return net_mode not in ("default", "none", "host") and not net_mode.startswith("container:")


def _network_fields(opts: CreateOptions, net_mode: str) -> str:
    """Check --network-alias, --ip, --mac-address against the network mode; the MAC address ("" if none)."""
    on_user = user_network(net_mode)
    if opts.network_aliases and not on_user:
        raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
    if opts.ip_address and not on_user:
        raise InvalidArgument("user specified IP address is supported on user defined networks only")
    if opts.mac_address and net_mode not in ("default",) and not on_user:
        raise InvalidArgument(f"Conflicting options: mac-address and the network mode ({net_mode})")
    if not opts.mac_address:
        return ""
    from pydock.links.network import check_mac  # lazy: only a --mac-address needs it (networking is heavy)

    return check_mac(opts.mac_address)


def _default_hostname(rt: Runtime, net_mode: str) -> str:
    """The host's name with its network, the other container's with its; else none (the short id)."""
    if net_mode == "host":
        return socket.gethostname()
    if net_mode.startswith("container:"):
        return str(rt.load(net_mode.partition(":")[2]).config.get("Hostname") or "")
    return ""


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
