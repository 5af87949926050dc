"""Docker's request values -> pydock's: the create body as a `CreateOptions`, image references,
filters, query values (timestamps, tail, streams, wait conditions, signals, timeouts).

Pure functions of the request: nothing here touches a container or an image.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pydock.graph.tags import split_reference
from pydock.runtime.api.createfields import HOST_CONFIG, refuse_unsupported
from pydock.runtime.api.httpd import Request, bool_value
from pydock.runtime.options import CreateOptions
from pydock.runtime.runtime import WAIT_CONDITIONS
from pydock.runtime.update import UpdateOptions
from pydock.utils.signals import parse_signal
from pydock.utils.errors import InvalidArgument

_REGISTRY_PREFIXES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")
_HEX_ID = re.compile(r"[0-9a-f]{12,64}")


# ---- references ---------------------------------------------------------------------------------

def strip_registry(ref: str) -> str:
    """`docker.io/library/busybox` -> `busybox` (the CLI sends references normalised)."""
    for prefix in _REGISTRY_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def image_ref(ref: str) -> str:
    """An image named in a path or query: `sha256:<hex>` -> `<hex>`, else the registry-less name."""
    return ref[len("sha256:"):] if ref.startswith("sha256:") else strip_registry(ref)


def shown_ref(ref: str) -> str:
    """A reference as dockerd shows it in "No such image": with `:latest` unless tagged or an id."""
    if ":" in ref.rsplit("/", 1)[-1] or _HEX_ID.fullmatch(ref):
        return ref
    return ref + ":latest"


def repo_tag(repo: str | None, tag: str | None) -> tuple[str | None, str | None]:
    """`repo=`/`tag=` of commit and import: the tag may also come inside `repo` (`repo=name%3A1.0`)."""
    name = strip_registry(repo or "") or None
    tag = tag or None
    if name and tag is None:
        name, tag = split_reference(name)
    return name, tag


# ---- query values -------------------------------------------------------------------------------

def filters(text: str | None) -> dict[str, list[str]]:
    """`filters={"name":["web"]}` (or the old `{"name":{"web":true}}` form) -> {key: [values]}."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"Invalid filters: {text}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid filters: {text}")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def timestamp(text: str | None) -> float | None:
    """`since=`/`until=`: seconds since the epoch (the CLI converts durations and dates to that)."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(f"Invalid timestamp: {text}") from None


def tail(text: str | None) -> int | None:
    """`tail=all|N`: None for all (also for what dockerd would read as all: junk, negative numbers)."""
    if not text or text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        return None
    return n if n >= 0 else None


def output_streams(req: Request) -> tuple[str, ...]:
    """The `stdout=1`/`stderr=1` streams a logs or attach request asks for."""
    return tuple(s for s in ("stdout", "stderr") if req.flag(s))


def prune_flag(text: str | None, key: str) -> bool | None:
    """The one filter a prune route takes (`dangling` for images, `all` for volumes) as a bool, None when
    absent; any other filter (until, label) is refused by name rather than ignored."""
    filters_given = filters(text)
    unknown = sorted(set(filters_given) - {key})
    if unknown:
        raise InvalidArgument(f"invalid filter '{unknown[0]}' (pydock prunes by {key}=true|false only)")
    values = filters_given.get(key)
    return bool_value(values[-1]) if values else None


def wait_condition(text: str | None) -> str:
    condition = text or "not-running"
    if condition not in WAIT_CONDITIONS:
        raise InvalidArgument(f'invalid condition: "{condition}"')
    return condition


def stop_timeout(req: Request) -> float | None:
    """`t=` of stop and restart: seconds before SIGKILL (a negative or missing one: the container's
    StopTimeout, else Docker's 10, as Runtime.stop decides)."""
    t = req.int_arg("t", None)
    return None if t is None or t < 0 else t


def signal_number(text: str | None) -> int:
    """`signal=KILL|SIGKILL|9` (default KILL) -> 9."""
    return parse_signal(text or "KILL")


# ---- bodies -------------------------------------------------------------------------------------

def create_options(body: Any, name: str | None) -> CreateOptions:
    """The `POST /containers/create?name=` request (flat Config + HostConfig) as a CreateOptions."""
    if not isinstance(body, dict):
        raise InvalidArgument("Config cannot be empty in order to create a container")
    image = strip_registry(str(body.get("Image") or ""))
    if not image:
        raise InvalidArgument("No image was specified (Config.Image is empty)")
    if body.get("AttachStdin") and not body.get("OpenStdin"):
        raise InvalidArgument("AttachStdin needs OpenStdin: the container's stdin is closed (docker run -i sets both)")
    refuse_unsupported(body)
    hc = body.get("HostConfig") or {}
    mode = hc.get("NetworkMode") or "default"
    aliases, ip, mac = _endpoint(body.get("NetworkingConfig"), mode)
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    entrypoint = body.get("Entrypoint")
    if entrypoint == [""]:
        entrypoint = ""  # `--entrypoint ""`: clear the image's
    hostname = body.get("Hostname") or None
    if hostname and body.get("Domainname"):
        hostname = f"{hostname}.{body['Domainname']}"
    memory = hc.get("Memory") or body.get("Memory") or None
    cpu = hc.get("CpuShares") or body.get("CpuShares") or None
    return CreateOptions(
        image=image,
        cmd=tuple(cmd) if cmd else None,
        entrypoint=entrypoint,
        name=name.lstrip("/") if name else None,
        env=tuple(body.get("Env") or ()),
        workdir=body.get("WorkingDir") or None,
        user=body.get("User") or None,
        hostname=hostname,
        volumes=_volumes(body, hc) + _mounts(hc.get("Mounts"))[0],
        memory=int(memory) if memory else None,
        cpu_shares=int(cpu) if cpu else None,
        links=tuple(hc.get("Links") or ()),
        ports=_ports(hc),
        publish_all=bool(hc.get("PublishAllPorts")),
        expose=tuple(body.get("ExposedPorts") or {}),
        network=False if mode == "none" or body.get("NetworkDisabled") else
        True if mode in ("default", "bridge") else mode,
        network_aliases=aliases,
        ip_address=ip or None,
        mac_address=body.get("MacAddress") or mac or None,
        dns=_strings(hc, "Dns"),
        auto_remove=bool(hc.get("AutoRemove")),
        tty=bool(body.get("Tty")),
        stdin_open=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")) if body.get("OpenStdin") else None,
        init=bool(hc.get("Init")),
        security_opt=_strings(hc, "SecurityOpt"),  # the values are judged by Runtime.create
        labels=_labels(body.get("Labels")),
        cap_add=_strings(hc, "CapAdd"),
        cap_drop=_strings(hc, "CapDrop"),
        tmpfs=_tmpfs(hc.get("Tmpfs")) + _mounts(hc.get("Mounts"))[1],
        read_only=bool(hc.get("ReadonlyRootfs")),
        extra_hosts=_strings(hc, "ExtraHosts"),
        dns_search=_strings(hc, "DnsSearch"),
        group_add=_strings(hc, "GroupAdd"),
        ulimits=_ulimits(hc.get("Ulimits")),
        pids_limit=int(hc["PidsLimit"]) if hc.get("PidsLimit") else None,
        cpuset_cpus=hc.get("CpusetCpus") or None,
        cpus=int(hc["NanoCpus"]) / 1e9 if hc.get("NanoCpus") else None,
        volumes_from=_strings(hc, "VolumesFrom"),
        lxc_conf=_lxc_conf(hc.get("LxcConf")),
        devices=_devices(hc.get("Devices")),
        restart=_restart(hc.get("RestartPolicy")),
        stop_timeout=int(body["StopTimeout"]) if body.get("StopTimeout") is not None else None,
        stop_signal=body.get("StopSignal") or None,
        privileged=bool(hc.get("Privileged")),
        memory_swap=int(hc["MemorySwap"]) if hc.get("MemorySwap") else None,
        memory_swappiness=int(hc["MemorySwappiness"]) if hc.get("MemorySwappiness") not in (None, -1) else None,
        console_size=console_size(hc.get("ConsoleSize")) or (),
        **_log_config(hc.get("LogConfig")),
    )


def console_size(value: Any) -> tuple[int, int] | None:
    """`ConsoleSize` ([rows, columns], of a create or an exec): a terminal's first size; [0, 0] is none."""
    if not value:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and 0 <= v <= 0xFFFF
                                                                 for v in value)):
        raise InvalidArgument(f"ConsoleSize must be [rows, columns], not {value!r}")
    return (value[0], value[1]) if all(value) else None


def _log_config(value: Any) -> dict[str, Any]:
    """`HostConfig.LogConfig` (`{"Type": "json-file", "Config": {"max-size": "10m"}}`) as CreateOptions'
    log_driver and log_opts; Runtime.create judges the values."""
    if not value:
        return {}
    if not isinstance(value, dict) or not isinstance(value.get("Config") or {}, dict):
        raise InvalidArgument("HostConfig.LogConfig must be an object with a Config object")
    return {"log_driver": str(value.get("Type") or "") or None,
            "log_opts": tuple(f"{k}={v}" for k, v in (value.get("Config") or {}).items())}


#: EndpointsConfig fields that ask for nothing when empty (Docker's zeroed endpoint)
_ENDPOINT_NOOP = ("DNSNames", "DriverOpts", "EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen",
                  "GwPriority", "IPAddress", "IPPrefixLen", "IPv6Gateway", "Links", "NetworkID")


def _endpoint(value: Any, mode: str) -> tuple[tuple[str, ...], str, str]:
    """`NetworkingConfig.EndpointsConfig` of a create: (aliases, IPAMConfig.IPv4Address, MacAddress) of the
    one network the container starts on (its NetworkMode's); more networks, or fields pydock does not
    carry out, are refused by name (connect the others with POST /networks/{id}/connect)."""
    endpoints = (value or {}).get("EndpointsConfig") if isinstance(value, dict) else None
    if not endpoints:
        return (), "", ""
    if not isinstance(endpoints, dict) or not all(isinstance(e, dict) or e is None for e in endpoints.values()):
        raise InvalidArgument("NetworkingConfig.EndpointsConfig must be an object of objects")
    if len(endpoints) > 1:
        raise InvalidArgument("NetworkingConfig.EndpointsConfig: pydock starts a container on one network; "
                              "connect it to the others with POST /networks/{id}/connect")
    (name, ep), = endpoints.items()
    ep = ep or {}
    if name != mode and not (mode in ("default", "bridge") and name in ("default", "bridge")):
        raise InvalidArgument(f"NetworkingConfig.EndpointsConfig names network {name}, HostConfig.NetworkMode {mode}")
    for field in _ENDPOINT_NOOP:
        if ep.get(field) not in (None, "", 0, [], {}):
            raise InvalidArgument(f"NetworkingConfig.EndpointsConfig.{name}.{field} is not supported by pydock")
    ipam = ep.get("IPAMConfig") or {}
    for field in ("IPv6Address", "LinkLocalIPs"):
        if ipam.get(field):
            raise InvalidArgument(f"NetworkingConfig.EndpointsConfig.{name}.IPAMConfig.{field} is not supported "
                                  "by pydock")
    aliases = ep.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InvalidArgument("NetworkingConfig.EndpointsConfig Aliases must be a list of strings")
    return tuple(aliases), str(ipam.get("IPv4Address") or ""), str(ep.get("MacAddress") or "")


def _mounts(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`HostConfig.Mounts` (the SDK's `mounts=`, compose's long syntax) as (`-v` specs, `--tmpfs` specs):
    bind, volume (named, or anonymous without a Source) and tmpfs; an option pydock does not carry out
    (propagation, nocopy, a volume driver, consistency) is refused by name."""
    if not value:
        return (), ()
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise InvalidArgument("HostConfig.Mounts must be a list of objects")
    volumes: list[str] = []
    tmpfs: list[str] = []
    for m in value:
        kind, target, source = m.get("Type"), str(m.get("Target") or ""), str(m.get("Source") or "")
        ro = ":ro" if m.get("ReadOnly") else ""
        if m.get("Consistency") not in (None, "", "default"):
            raise InvalidArgument("HostConfig.Mounts[].Consistency is not supported by pydock")
        if kind == "bind":
            if (m.get("BindOptions") or {}).get("Propagation") not in (None, "", "rprivate"):
                raise InvalidArgument("HostConfig.Mounts[].BindOptions.Propagation is not supported by pydock")
            volumes.append(f"{source}:{target}{ro}")
        elif kind == "volume":
            options = m.get("VolumeOptions") or {}
            if options.get("NoCopy") or (options.get("DriverConfig") or {}).get("Name") not in (None, "", "local"):
                raise InvalidArgument("HostConfig.Mounts[].VolumeOptions (NoCopy, DriverConfig) is not supported")
            volumes.append(f"{source}:{target}{ro}" if source else target)
        elif kind == "tmpfs":
            options = m.get("TmpfsOptions") or {}
            extra = [f"size={int(options['SizeBytes'])}"] if options.get("SizeBytes") else []
            extra += [f"mode={int(options['Mode']):o}"] if options.get("Mode") else []
            extra += ["ro"] if m.get("ReadOnly") else []
            tmpfs.append(f"{target}:{','.join(extra)}" if extra else target)
        else:
            raise InvalidArgument(f"HostConfig.Mounts[].Type {kind!r} is not supported (bind, volume or tmpfs)")
    return tuple(volumes), tuple(tmpfs)


#: the fields of `POST /containers/{id}/update` pydock carries out (any other must ask for nothing)
_UPDATE_FIELDS = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpusetCpus", "PidsLimit", "RestartPolicy")


def update_options(body: Any) -> UpdateOptions:
    """The update body (Docker's Resources + RestartPolicy; the docker CLI sends every field zeroed) as
    UpdateOptions: 0 / null / "" leave a value as it is; a field pydock does not update is refused by name."""
    if not isinstance(body, dict):
        raise InvalidArgument("the update body must be a JSON object")
    for name, value in body.items():
        if name in _UPDATE_FIELDS or value in (None, 0, "", [], {}):
            continue
        if name in HOST_CONFIG and HOST_CONFIG[name](value):
            continue
        raise InvalidArgument(f"{name} is not supported by pydock update (got {json.dumps(value)[:80]})")
    policy = body.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise InvalidArgument("RestartPolicy must be an object")
    restart = None
    if policy.get("Name"):
        restart = _restart(policy) or "no"
    pids = body.get("PidsLimit")
    return UpdateOptions(memory=int(body["Memory"]) if body.get("Memory") else None,
                         memory_swap=int(body["MemorySwap"]) if body.get("MemorySwap") else None,
                         cpus=int(body["NanoCpus"]) / 1e9 if body.get("NanoCpus") else None,
                         cpu_shares=int(body["CpuShares"]) if body.get("CpuShares") else None,
                         cpuset_cpus=str(body["CpusetCpus"]) if body.get("CpusetCpus") else None,
                         pids_limit=int(pids) if pids is not None else None, restart=restart)


def _restart(value: Any) -> str | None:
    """`HostConfig.RestartPolicy` (`{"Name": "on-failure", "MaximumRetryCount": 3}`) as `--restart` says it."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument("HostConfig.RestartPolicy must be an object")
    name, count = value.get("Name") or "no", int(value.get("MaximumRetryCount") or 0)
    if name == "no":
        return None
    return f"{name}:{count}" if name == "on-failure" and count else name


def _devices(value: Any) -> tuple[str, ...]:
    """`HostConfig.Devices` (`[{"PathOnHost", "PathInContainer", "CgroupPermissions"}]`) as `--device` specs."""
    if not value:
        return ()
    try:
        return tuple(f"{d['PathOnHost']}:{d.get('PathInContainer') or d['PathOnHost']}:"
                     f"{d.get('CgroupPermissions') or 'rwm'}" for d in value)
    except (TypeError, KeyError):
        raise InvalidArgument(f"HostConfig.Devices must be a list of {{PathOnHost, PathInContainer, "
                              f"CgroupPermissions}}, not {json.dumps(value)[:100]}") from None


def _lxc_conf(value: Any) -> tuple[str, ...]:
    """Docker 0.7's `HostConfig.LxcConf`: `[{"Key": k, "Value": v}]` (or an object) as `--lxc-conf` specs."""
    if not value:
        return ()
    items = value.items() if isinstance(value, dict) else [(d.get("Key"), d.get("Value")) for d in value
                                                          if isinstance(d, dict)]
    return tuple(f"{k}={v}" for k, v in items)


def _ulimits(value: Any) -> tuple[str, ...]:
    """`HostConfig.Ulimits` (`[{"Name": "nofile", "Soft": 1024, "Hard": 2048}]`) as `--ulimit` specs."""
    if not value:
        return ()
    try:
        return tuple(f"{u['Name']}={int(u['Soft'])}:{int(u['Hard'])}" for u in value)
    except (TypeError, KeyError, ValueError):
        raise InvalidArgument(f"HostConfig.Ulimits must be a list of {{Name, Soft, Hard}}, not "
                              f"{json.dumps(value)[:100]}") from None


def _tmpfs(value: Any) -> tuple[str, ...]:
    """`HostConfig.Tmpfs` (`{"/run": "size=64m"}`) as `--tmpfs` specs."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"HostConfig.Tmpfs must be an object of strings, not {json.dumps(value)[:100]}")
    return tuple(f"{path}:{options}" if options else path for path, options in value.items())


def _labels(value: Any) -> tuple[str, ...]:
    """`Config.Labels`, an object of strings, as `K=V` items."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"Labels must be an object of strings, not {json.dumps(value)[:100]}")
    return tuple(f"{k}={v}" for k, v in value.items())


def _strings(hc: dict[str, Any], field: str) -> tuple[str, ...]:
    """A list-of-strings field of HostConfig (a bare string would be taken apart letter by letter)."""
    value = hc.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"HostConfig.{field} must be a list of strings, not {json.dumps(value)[:100]}")
    return tuple(value)


def _volumes(body: dict[str, Any], hc: dict[str, Any]) -> tuple[str, ...]:
    """`-v` specs: fresh volumes from `Volumes`, bind mounts from `HostConfig.Binds`. The SDK lists a
    bind's target in `Volumes` too: one mount per target."""
    binds = [str(b) for b in hc.get("Binds") or ()]
    bound = {b.split(":")[1] for b in binds if ":" in b}
    return tuple([str(v) for v in body.get("Volumes") or {} if str(v) not in bound] + binds)


def _ports(hc: dict[str, Any]) -> tuple[str, ...]:
    """`-p` specs from `PortBindings` (`{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`)."""
    out = []
    for private, bindings in (hc.get("PortBindings") or {}).items():
        for b in bindings or [{}]:
            host_ip, host_port = (b or {}).get("HostIp") or "", (b or {}).get("HostPort") or ""
            if host_ip:
                out.append(f"{host_ip}:{host_port}:{private}")
            elif host_port:
                out.append(f"{host_port}:{private}")
            else:
                out.append(str(private))
    return tuple(out)


def commit_config(req: Request) -> dict[str, Any] | None:
    """The Config a commit's JSON body overrides (empty fields dropped)."""
    if not (req.headers.get("Content-Type") or "").startswith("application/json"):
        return None
    config = req.json()
    if not isinstance(config, dict):
        raise InvalidArgument("The commit body must be a JSON object (a container Config)")
    return {k: v for k, v in config.items() if v not in (None, "", [], {})} or None
