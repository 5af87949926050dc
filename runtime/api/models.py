"""JSON shapes of the Docker Engine API (v1.24-1.44) built from pydock's records: container summary,
inspect, changes and wait result; image summary, inspect, history and deletion; version and info.

Types follow what the real clients decode (see shared/reference/engine_api.md): `Created` is an int in
summaries and an RFC 3339 string in inspect, image ids carry `sha256:`, every name starts with `/`.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydock.runtime import cgroups, jsonlog, lxcconf
from pydock.runtime.state import Status, format_time, utcnow
from pydock.runtime.volumes import VolumeStore
from pydock.utils.humanize import human_duration
from pydock.utils.paths import RootLayout
from pydock.utils.version import API_VERSION, VERSION

if TYPE_CHECKING:
    from pydock.graph.image import Image
    from pydock.runtime.container import Container

log = logging.getLogger(__package__)

MIN_API_VERSION = "1.24"
#: `Kind` of a change in `GET /containers/{id}/changes`.
CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
            "s390x": "s390x"}


#: an Engine API version, (1, 44) for "1.44"
ApiVersion = tuple[int, int]


def image_ref(image_id: str) -> str:
    """An image id as the API shows it: `sha256:<hex>` (the SDK splits it at the colon)."""
    return f"sha256:{image_id}"


def go_arch() -> str:
    machine = platform.machine()
    return _GO_ARCH.get(machine, machine)


def _since(when: datetime | None) -> float:
    return max(0.0, (utcnow() - when).total_seconds()) if when is not None else 0.0


def status_text(c: Container, paused: bool = False) -> str:
    """The STATUS column: `Up 2 seconds`, `Up 5 minutes (Paused)`, `Exited (0) 3 minutes ago`, `Created`."""
    st = c.state.status
    if st is Status.RUNNING:
        return f"Up {human_duration(_since(c.state.started_at))}" + (" (Paused)" if paused else "")
    if st is Status.CREATED:
        return "Created"
    if st is Status.GHOST:
        return "Dead"
    if st is Status.RESTARTING:
        return f"Restarting ({c.state.exit_code}) {human_duration(_since(c.state.finished_at))} ago"
    return f"Exited ({c.state.exit_code}) {human_duration(_since(c.state.finished_at))} ago"


def _unix(when: datetime | None) -> int:
    return int(when.timestamp()) if when is not None else 0


def port_list(c: Container) -> list[dict[str, Any]]:
    """Summary `Ports`: `[{IP, PrivatePort, PublicPort, Type}]` plus exposed-only ports."""
    out: list[dict[str, Any]] = []
    published = (c.network or {}).get("Ports") or {}
    for key, binds in sorted(published.items()):
        number, _, proto = key.partition("/")
        for b in binds or ():
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(number),
                        "PublicPort": int(b.get("HostPort") or 0), "Type": proto or "tcp"})
    for key in sorted((c.config.get("ExposedPorts") or {}).keys()):
        if key not in published:
            number, _, proto = key.partition("/")
            out.append({"PrivatePort": int(number), "Type": proto or "tcp"})
    return out


def network_mode(c: Container) -> str:
    """HostConfig.NetworkMode: default, none, host or container:<id>."""
    return "none" if c.config.get("NetworkDisabled") else c.hostconfig.get("NetworkMode") or "default"


def container_networks(c: Container) -> dict[str, Any]:
    """`NetworkSettings.Networks`: a running container's endpoints as its start recorded them; a stopped
    one's networks as configured (the user networks it is a member of, `bridge` on the default one),
    without addresses, as dockerd shows them (docker-compose reads the aliases there)."""
    if c.state.running and c.network and c.network.get("Networks") is not None:
        return dict(c.network["Networks"])
    mode = network_mode(c)
    if mode in ("none", "host"):  # dockerd lists the predefined network, with no address
        from pydock.links.networks import predefined_id  # lazy: see below

        return {mode: _empty_endpoint(predefined_id(str(c.dir.parents[1]), mode))}
    from pydock.links.netstore import NetStore  # lazy: only containers on user networks have any

    out: dict[str, Any] = {}
    if network_mode(c) == "default":
        out["bridge"] = _empty_endpoint("")
    store = NetStore(RootLayout(c.dir.parents[1]).network)  # <root>/containers/<id>
    if store.path.exists():
        for rec in store.read().values():
            ep = rec.endpoints.get(c.id)
            if ep is not None:
                out[rec.name] = {**_empty_endpoint(rec.id), "Aliases": list(ep.aliases) or None,
                                 "IPAMConfig": {"IPv4Address": ep.ip} if ep.ip else None, "MacAddress": ep.mac}
    return out


def _empty_endpoint(network_id: str) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": network_id, "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": None}


def mounts(c: Container) -> list[dict[str, Any]]:
    """The container's volumes (`Type: volume`, named) and bind mounts, as dockerd lists them."""
    store = VolumeStore(RootLayout(c.dir.parents[1]).volumes)  # <root>/containers/<id>
    out = []
    for target, source in sorted(c.volumes.items()):
        rw = bool(c.volumes_rw.get(target, True))
        volume = store.owner_of(source)
        if volume is not None:
            out.append({"Type": "volume", "Name": volume.name, "Source": source, "Destination": target,
                        "Driver": "local", "Mode": "" if rw else "ro", "RW": rw, "Propagation": ""})
        else:
            out.append({"Type": "bind", "Source": source, "Destination": target, "Mode": "", "RW": rw,
                        "Propagation": "rprivate"})
    return out


def container_summary(c: Container, names: list[str], image_name: str, size: tuple[int, int] | None = None,
                      paused: bool = False) -> dict[str, Any]:
    """One element of `GET /containers/json` (`paused`: the kernel froze it, which only the Runtime asks)."""
    out: dict[str, Any] = {
        "Id": c.id, "Names": names or [c.name or "/" + c.short_id], "Image": image_name,
        "ImageID": image_ref(c.image), "Command": c.command_line, "Created": _unix(c.created),
        "Ports": port_list(c), "Labels": dict(c.config.get("Labels") or {}),
        "State": c.state.docker_status(paused), "Status": status_text(c, paused), "HostConfig": {"NetworkMode": network_mode(c)},
        "NetworkSettings": {"Networks": (c.network or {}).get("Networks")
                            or (container_networks(c) if network_mode(c) in ("none", "host") else {})},
        "Mounts": mounts(c),
    }
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


def _links_for_inspect(c: Container) -> list[str] | None:
    """HostConfig.Links as moby shows them: `/child:/parent/alias`."""
    links = c.hostconfig.get("Links") or []
    if not links:
        return None
    out = []
    for spec in links:
        child, _, alias = spec.partition(":")
        child = child if child.startswith("/") else "/" + child
        out.append(f"{child}:{c.name}/{alias or child.lstrip('/')}")
    return out


def container_inspect(c: Container, image_name: str) -> dict[str, Any]:
    """`GET /containers/{id}/json`: the fields the docker CLI and SDK read, with Go-decodable types."""
    cfg = c.config
    st = c.state
    net = c.network or {}
    hc = c.hostconfig
    binds = hc.get("Binds") or None
    config = {
        "Hostname": cfg.get("Hostname", ""), "Domainname": cfg.get("Domainname", ""), "User": cfg.get("User", ""),
        "AttachStdin": bool(cfg.get("AttachStdin")), "AttachStdout": bool(cfg.get("AttachStdout", True)),
        "AttachStderr": bool(cfg.get("AttachStderr", True)), "ExposedPorts": cfg.get("ExposedPorts") or None,
        "Tty": bool(cfg.get("Tty")), "OpenStdin": bool(cfg.get("OpenStdin")), "StdinOnce": bool(cfg.get("StdinOnce")),
        "Env": cfg.get("Env") or None, "Cmd": cfg.get("Cmd") or None, "Image": image_name,
        "Volumes": cfg.get("Volumes") or None, "WorkingDir": cfg.get("WorkingDir", ""),
        "Entrypoint": cfg.get("Entrypoint") or None, "OnBuild": None, "Labels": dict(cfg.get("Labels") or {}),
    }
    if cfg.get("MacAddress"):
        config["MacAddress"] = cfg["MacAddress"]  # omitted when unset, as dockerd does at every version
    if cfg.get("StopSignal"):
        config["StopSignal"] = cfg["StopSignal"]  # omitted when unset, as dockerd does
    if cfg.get("StopTimeout") is not None:
        config["StopTimeout"] = cfg["StopTimeout"]
    host_config = {
        "Binds": binds, "ContainerIDFile": hc.get("ContainerIDFile", ""),
        "LogConfig": hc.get("LogConfig") or {"Type": "json-file", "Config": {}}, "NetworkMode": network_mode(c),
        "PortBindings": _port_bindings(hc),
        "RestartPolicy": hc.get("RestartPolicy") or {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": bool(hc.get("AutoRemove")), "VolumeDriver": "", "VolumesFrom": hc.get("VolumesFrom"),
        "ConsoleSize": hc.get("ConsoleSize") or [0, 0], "CapAdd": hc.get("CapAdd"), "CapDrop": hc.get("CapDrop"), "CgroupnsMode": "private",
        "Dns": cfg.get("Dns") or [], "DnsOptions": [], "DnsSearch": hc.get("DnsSearch") or [],
        "ExtraHosts": hc.get("ExtraHosts"), "GroupAdd": hc.get("GroupAdd"),
        "IpcMode": "private", "Cgroup": "", "Links": _links_for_inspect(c), "OomScoreAdj": 0, "PidMode": "",
        "Privileged": bool(hc.get("Privileged")), "PublishAllPorts": bool(hc.get("PublishAllPorts")),
        "ReadonlyRootfs": bool(hc.get("ReadonlyRootfs")), "SecurityOpt": hc.get("SecurityOpt") or None,
        "UTSMode": "", "UsernsMode": "",
        "ShmSize": lxcconf.SHM_SIZE, "Runtime": "lxc", "Isolation": "", "CpuShares": int(cfg.get("CpuShares") or 0),
        "Memory": int(cfg.get("Memory") or 0), "NanoCpus": int(hc.get("NanoCpus") or 0), "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": hc.get("CpusetCpus") or "", "CpusetMems": "", "Devices": hc.get("Devices") or [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": int(cfg.get("MemorySwap") or 0),
        "MemorySwappiness": hc.get("MemorySwappiness"),
        "OomKillDisable": False, "PidsLimit": hc.get("PidsLimit"), "Ulimits": hc.get("Ulimits"), "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None if hc.get("Privileged") else lxcconf.masked_paths(),
        "ReadonlyPaths": None if hc.get("Privileged") else lxcconf.readonly_paths(),
    }
    if hc.get("LxcConf"):
        host_config["LxcConf"] = hc["LxcConf"]  # Docker 0.7's field
    if hc.get("Tmpfs"):
        host_config["Tmpfs"] = hc["Tmpfs"]  # omitted unless set, as dockerd does
    if hc.get("Init"):
        host_config["Init"] = True  # omitted unless set, as dockerd does
    return {
        "Id": c.id, "Created": format_time(c.created), "Path": c.path, "Args": list(c.args),
        "State": {
            "Status": c.state.docker_status(), "Running": st.running and not st.ghost, "Paused": False,
            "Restarting": st.status is Status.RESTARTING,
            "OOMKilled": False, "Dead": st.ghost, "Pid": st.pid, "ExitCode": st.exit_code, "Error": st.error,
            "StartedAt": format_time(st.started_at), "FinishedAt": format_time(st.finished_at),
        },
        "Image": image_ref(c.image), "ResolvConfPath": str(c.resolv_conf_path),
        "HostnamePath": str(c.hostname_path), "HostsPath": str(c.hosts_path),
        "LogPath": "" if jsonlog.driver(hc.get("LogConfig")) == "none" else str(c.log_path),
        "Name": c.name or "/" + c.short_id, "RestartCount": st.restart_count, "Driver": c.driver, "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
        "HostConfig": host_config, "GraphDriver": {"Name": c.driver, "Data": {}}, "Mounts": mounts(c),
        "Config": config,
        "NetworkSettings": {
            "Bridge": net.get("Bridge", ""), "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "Ports": net.get("Ports") or {}, "IPAddress": net.get("IPAddress", ""),
            "IPPrefixLen": int(net.get("IPPrefixLen") or 0), "Gateway": net.get("Gateway", ""),
            "MacAddress": net.get("MacAddress", ""), "Networks": container_networks(c),
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPv6Gateway": "",
        },
    }


def changes(lines: list[object]) -> list[dict[str, Any]]:
    """`GET /containers/{id}/changes` from `A|C|D /path` lines."""
    out = []
    for change in lines:
        kind, _, path = str(change).partition(" ")
        out.append({"Path": path, "Kind": CHANGE_KINDS.get(kind, 0)})
    return out


def wait_result(code: int, error: str | None = None) -> dict[str, Any]:
    """The body of `POST /containers/{id}/wait`; `Error` says why an auto-remove failed."""
    return {"StatusCode": code, "Error": {"Message": error} if error else None}


def _port_bindings(hc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, list[dict[str, str]]] = {}
    for spec in hc.get("PortSpecs") or []:
        parts = str(spec).split(":")
        private = parts[-1] if "/" in parts[-1] else parts[-1] + "/tcp"
        host_ip = parts[0] if len(parts) == 3 else ""
        host_port = parts[-2] if len(parts) >= 2 else ""
        out.setdefault(private, []).append({"HostIp": host_ip, "HostPort": host_port})
    return out


def image_summary(image: Image, tags: list[str], virtual_size: int, digests: list[str] | None = None
                  ) -> dict[str, Any]:
    """One element of `GET /images/json`."""
    return {
        "Id": image_ref(image.id), "ParentId": image_ref(image.parent) if image.parent else "",
        "RepoTags": tags, "RepoDigests": list(digests or []), "Created": _unix(image.created), "Size": virtual_size,
        "VirtualSize": virtual_size, "SharedSize": -1, "Labels": dict((image.config or {}).get("Labels") or {}),
        "Containers": -1,
    }


def image_inspect(image: Image, tags: list[str], virtual_size: int, driver: str, digests: list[str] | None = None,
                  layers: list[str] | None = None) -> dict[str, Any]:
    """`GET /images/{name}/json`; `Config` is always an object (the SDK reads `Config.Labels`)."""
    config = dict(image.config or {})
    config.setdefault("Labels", None)
    return {
        "Id": image_ref(image.id), "RepoTags": tags, "RepoDigests": list(digests or []),
        "Parent": image_ref(image.parent) if image.parent else "", "Comment": image.comment,
        "Created": format_time(image.created), "Container": image.container or "",
        "ContainerConfig": image.container_config or {}, "DockerVersion": image.docker_version,
        "Author": image.author, "Config": config, "Architecture": image.architecture or go_arch(),
        "Os": "linux", "Size": virtual_size, "VirtualSize": virtual_size,
        "GraphDriver": {"Name": driver, "Data": {}}, "RootFS": {"Type": "layers", "Layers": list(layers or [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def image_history(rows: list[Any], names_for: Any) -> list[dict[str, Any]]:
    """`GET /images/{name}/history` from the store's history rows (newest first; a row without an id is a
    config-only step, `<missing>` as dockerd shows it); `names_for(id)` gives a layer's tags."""
    out = []
    for row in rows:
        out.append({"Id": image_ref(row.id) if row.id else "<missing>", "Created": _unix(row.created),
                    "CreatedBy": row.created_by, "Tags": (names_for(row.id) if row.id else None) or None,
                    "Size": row.size, "Comment": row.comment})
    return out


def image_deleted(lines: list[str]) -> list[dict[str, str]]:
    """`DELETE /images/{name}` from the store's `Untagged: x` / `Deleted: <id>` lines."""
    out = []
    for line in lines:
        key, _, value = line.partition(": ")
        out.append({"Untagged": value} if key == "Untagged" else {"Deleted": image_ref(value)})
    return out


def version_info(git_commit: str = "") -> dict[str, Any]:
    """`GET /version` (also unversioned: the SDK reads `ApiVersion` from it to negotiate)."""
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": git_commit,
               "GoVersion": f"python{platform.python_version()}", "Os": "linux", "Arch": go_arch(),
               "KernelVersion": platform.release(), "BuildTime": "", "Experimental": "false"}
    return {
        "Platform": {"Name": "pydock"},
        "Components": [{"Name": "Engine", "Version": VERSION, "Details": details}],
        "Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": git_commit,
        "GoVersion": details["GoVersion"], "Os": "linux", "Arch": go_arch(), "KernelVersion": platform.release(),
        "BuildTime": "",
    }


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError) as err:
        log.debug("MemTotal unreadable (%s): reporting 0", err)
    return 0


def registry_config(insecure: tuple[str, ...]) -> dict[str, Any]:
    """`RegistryConfig` of /info: loopback and the --insecure-registry hosts may use plain http
    (`docker info` lists them as Insecure Registries)."""
    indexes = {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}}
    indexes.update({h: {"Name": h, "Mirrors": [], "Secure": False, "Official": False} for h in insecure})
    return {"AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"], "IndexConfigs": indexes, "Mirrors": None}


def system_info(*, containers: list[Container], images: int, driver: str, driver_status: list[tuple[str, str]],
                root: str, insecure_registries: tuple[str, ...] = (), paused: int = 0) -> dict[str, Any]:
    """`GET /info`: counts (`paused` of the running ones), storage, kernel; `Swarm` is what `docker
    inspect` looks at."""
    running = sum(1 for c in containers if c.state.running) - paused
    return {
        "ID": "pydock", "Containers": len(containers), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused, "Images": images, "Driver": driver,
        "DriverStatus": [[k, str(v)] for k, v in driver_status], "DockerRootDir": root, "SystemStatus": None,
        "Plugins": {"Volume": [], "Network": ["bridge", "none"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": False, "CpuCfsPeriod": cgroups.controller_available("cpu"),
        "CpuCfsQuota": cgroups.controller_available("cpu"), "CPUShares": True,
        "CPUSet": cgroups.controller_available("cpuset"), "PidsLimit": cgroups.controller_available("pids"), "IPv4Forwarding": True, "BridgeNfIptables": True,
        "BridgeNfIp6tables": False, "Debug": False, "NFd": 0, "OomKillDisable": False, "NGoroutines": 0,
        "SystemTime": format_time(utcnow()), "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs",
        "CgroupVersion": "1", "NEventsListener": 0, "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(insecure_registries), "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
        "GenericResources": None, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": platform.node(),
        "Labels": [], "ExperimentalBuild": False, "ServerVersion": VERSION, "Runtimes": {"lxc": {"path": "lxc-start"}},
        "DefaultRuntime": "lxc", "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                                           "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": None,
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError as err:
        log.debug("/etc/os-release unreadable (%s): reporting Linux", err)
    return "Linux"


# --- one document per API version ----------------------------------------------------------------------
# The builders above produce the newest shape (what `pydock inspect` prints too); `for_version` trims,
# completes or reshapes it for the version a request asked for. Each fact comes from moby's
# docs/api/version-history.md, or from its per-version swagger (docs/api/v1.NN.yaml) where the history
# is silent; keys a version shows unchanged across 1.24-1.44 have no entry.


@dataclass(frozen=True)
class Gate:
    """The key at `path` is shown from API `since` on and up to (not including) `until`; `older` is the
    value it had before `until` where the newest shape has no such key. A path is dotted keys; `[]` steps
    into every element of a list."""

    path: str
    since: ApiVersion = (1, 0)
    until: ApiVersion | None = None
    older: Any = None

    def shown(self, api: ApiVersion) -> bool:
        return self.since <= api and (self.until is None or api < self.until)


@dataclass(frozen=True)
class Reshape:
    """Before API `until`, the whole document is `convert(document)` (a value whose shape changed)."""

    until: ApiVersion
    convert: Callable[[dict[str, Any]], dict[str, Any]]


def _untagged_as_none(doc: dict[str, Any]) -> dict[str, Any]:
    if not doc.get("RepoTags") and not doc.get("RepoDigests"):
        return {**doc, "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"]}
    return doc


def _security_option_names(doc: dict[str, Any]) -> dict[str, Any]:
    names = [dict(kv.split("=", 1) for kv in opt.split(",") if "=" in kv).get("name", opt)
             for opt in doc.get("SecurityOptions") or []]
    return {**doc, "SecurityOptions": names}


_MOUNT_TYPE = Gate("Mounts[].Type", since=(1, 25))
#: per document kind: the keys versions differ in, and the values whose shape changed.
GATES: dict[str, tuple[Gate, ...]] = {
    "container": (
        Gate("HostConfig.AutoRemove", since=(1, 25)), Gate("HostConfig.NanoCpus", since=(1, 25)),
        Gate("HostConfig.CpuRealtimePeriod", since=(1, 25)), Gate("HostConfig.CpuRealtimeRuntime", since=(1, 25)),
        Gate("HostConfig.Init", since=(1, 25)), Gate("Config.StopTimeout", since=(1, 25)), _MOUNT_TYPE,
        Gate("HostConfig.DeviceCgroupRules", since=(1, 28)), Gate("HostConfig.MaskedPaths", since=(1, 38)),
        Gate("HostConfig.ReadonlyPaths", since=(1, 38)), Gate("HostConfig.DeviceRequests", since=(1, 40)),
        Gate("HostConfig.CgroupnsMode", since=(1, 41)), Gate("HostConfig.KernelMemory", until=(1, 42), older=0),
    ),
    "container_summary": (_MOUNT_TYPE,),
    "image": (Gate("Metadata", since=(1, 31)), Gate("VirtualSize", until=(1, 44))),
    "image_summary": (Gate("SharedSize", since=(1, 25)), Gate("Containers", since=(1, 25)),
                      Gate("VirtualSize", until=(1, 44))),
    "df_image": (Gate("VirtualSize", until=(1, 44)),),  # /system/df's images: no `<none>:<none>` there
    "info": (
        Gate("ExecutionDriver", until=(1, 25), older="<not supported>"), Gate("Isolation", since=(1, 25)), Gate("Warnings", since=(1, 39)),
        Gate("PidsLimit", since=(1, 40)), Gate("CgroupVersion", since=(1, 41)), Gate("OSVersion", since=(1, 41)),
        Gate("KernelMemory", until=(1, 42), older=False),
    ),
    # `/version` keeps every key at every version, as dockerd does: the docker CLI reads MinAPIVersion
    # even at 1.24 (and prints "(minimum version )" without it)
}
RESHAPES: dict[str, tuple[Reshape, ...]] = {
    "image_summary": (Reshape(until=(1, 43), convert=_untagged_as_none),),
    "info": (Reshape(until=(1, 25), convert=_security_option_names),),
}


def for_version(kind: str, doc: dict[str, Any], api: ApiVersion) -> dict[str, Any]:
    """`doc` (a `kind` document in the newest shape) as API `api` shows it; `doc` itself is left alone."""
    out = doc
    for reshape in RESHAPES.get(kind, ()):
        if api < reshape.until:
            out = reshape.convert(out)
    gates = GATES.get(kind, ())
    hidden = [gate.path for gate in gates if not gate.shown(api)]
    added = [gate for gate in gates if gate.older is not None and gate.shown(api)]
    if not hidden and not added:
        return out
    out = _copy(out)
    for path in hidden:
        _drop(out, path.replace("[]", ".[]").split("."))
    for gate in added:
        *parents, key = gate.path.split(".")
        node = out
        for step in parents:
            node = node.get(step) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(key, gate.older)
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _drop(node: Any, steps: list[str]) -> None:
    step, rest = steps[0], steps[1:]
    if step == "[]":
        for child in node if isinstance(node, list) else ():
            _drop(child, rest)
    elif isinstance(node, dict):
        if not rest:
            node.pop(step, None)
        elif step in node:
            _drop(node[step], rest)
