"""Every field of Docker's container-create body (Config and HostConfig, API 1.24-1.44) that pydock
does not carry out, with the values that ask for nothing: Docker's zero values and its defaults.

Clients send whole structs (the docker CLI a zeroed HostConfig of ~60 fields), so a field's presence
means nothing; a value outside its no-op set asks for behaviour pydock does not have, and is refused
with a 400 naming the field instead of being dropped (a restart policy that never restarts is worse
than an error). The fields `decode.create_options` reads are not listed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydock.utils.errors import InvalidArgument


def _empty(value: Any) -> bool:
    """null, false, 0, "", [] or {}: the JSON zero values Go clients send for unset fields."""
    return value in (None, False, 0, "") or value == [] or value == {}


def _one_of(*allowed: Any) -> Callable[[Any], bool]:
    return lambda value: _empty(value) or value in allowed


def _healthcheck(value: Any) -> bool:
    """No healthcheck, or `--no-healthcheck` (`["NONE"]`): nothing to run."""
    return _empty(value) or isinstance(value, dict) and (_empty(value.get("Test")) or value.get("Test") == ["NONE"])


#: HostConfig fields -> the values that ask for nothing pydock does not do
HOST_CONFIG: dict[str, Callable[[Any], bool]] = {
    "VolumeDriver": _one_of("local"),
    "Annotations": _empty,
    "CgroupnsMode": _empty,
    "DnsOptions": _empty,
    "IpcMode": _one_of("private"),
    "Cgroup": _empty,
    "OomScoreAdj": _empty,
    "PidMode": _one_of("private"),
    "StorageOpt": _empty,
    "UTSMode": _one_of("private"),
    "UsernsMode": _one_of("private"),
    "ShmSize": _empty,
    "Sysctls": _empty,
    "Runtime": _one_of("lxc"),
    "Isolation": _one_of("default"),
    "MaskedPaths": _empty,
    "ReadonlyPaths": _empty,
    # Resources (inlined in HostConfig); Memory and CpuShares are carried out
    "CgroupParent": _empty,
    "BlkioWeight": _empty,
    "BlkioWeightDevice": _empty,
    "BlkioDeviceReadBps": _empty,
    "BlkioDeviceWriteBps": _empty,
    "BlkioDeviceReadIOps": _empty,
    "BlkioDeviceWriteIOps": _empty,
    "CpuPeriod": _empty,
    "CpuQuota": _empty,
    "CpuRealtimePeriod": _empty,
    "CpuRealtimeRuntime": _empty,
    "CpusetMems": _empty,
    "DeviceCgroupRules": _empty,
    "DeviceRequests": _empty,
    "KernelMemory": _empty,
    "KernelMemoryTCP": _empty,
    "MemoryReservation": _empty,
    "OomKillDisable": _empty,
    "CpuCount": _empty,
    "CpuPercent": _empty,
    "IOMaximumIOps": _empty,
    "IOMaximumBandwidth": _empty,
}

#: Config fields -> the values that ask for nothing pydock does not do
CONFIG: dict[str, Callable[[Any], bool]] = {
    "Healthcheck": _healthcheck,
    "OnBuild": _empty,
    "Shell": _empty,
}


def refuse_unsupported(body: dict[str, Any]) -> None:
    """InvalidArgument naming the first field of a create body that asks for something pydock does not do."""
    hc = body.get("HostConfig") or {}
    if not isinstance(hc, dict):
        raise InvalidArgument("HostConfig must be an object")
    for where, fields, values in (("HostConfig", HOST_CONFIG, hc), ("Config", CONFIG, body)):
        for name, is_noop in fields.items():
            if name in values and not is_noop(values[name]):
                raise InvalidArgument(f"{where}.{name} is not supported by pydock (got {_shown(values[name])})")


def _shown(value: Any) -> str:
    """The refused value, short enough for a one-line error."""
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
