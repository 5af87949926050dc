"""Request decoding and stream framing of `pydock serve`, without a server: what the docker CLI's and
SDK's create bodies become as CreateOptions, query values, and Docker's 8-byte frames."""

from __future__ import annotations

import json
import struct
from datetime import datetime, timezone
from email.message import Message
from urllib.parse import parse_qs

import pytest

from pydock.runtime.api import decode, streams
from pydock.runtime.api.httpd import Request
from pydock.runtime.jsonlog import LogRecord
from pydock.runtime.options import CreateOptions
from pydock.utils.errors import InvalidArgument

#: what `docker run --rm --name web --link db:db -e A=1 -p 8080:80 alpine echo hi` sends (trimmed).
CLI_BODY = {
    "Hostname": "", "User": "", "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False,
    "OpenStdin": False, "Env": ["A=1"], "Cmd": ["echo", "hi"], "Image": "docker.io/library/alpine",
    "Volumes": {}, "WorkingDir": "", "Entrypoint": None, "Labels": {}, "ExposedPorts": {"80/tcp": {}},
    "HostConfig": {"Binds": None, "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default",
                   "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, "AutoRemove": True,
                   "Links": ["db:db"]},
    "NetworkingConfig": {"EndpointsConfig": {"default": {}}},
}


#: what `docker create busybox true` (docker CLI 28.2) sends: every HostConfig field, zeroed
DOCKER_CLI_ZEROED = json.loads('{"AttachStderr": true, "AttachStdin": false, "AttachStdout": true, "Cmd": ["true"], "Domainname": "", "Entrypoint": null, "Env": null, "HostConfig": {"AutoRemove": false, "Binds": null, "BlkioDeviceReadBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceWriteIOps": [], "BlkioWeight": 0, "BlkioWeightDevice": [], "CapAdd": null, "CapDrop": null, "Cgroup": "", "CgroupParent": "", "CgroupnsMode": "", "ConsoleSize": [0, 0], "ContainerIDFile": "", "CpuCount": 0, "CpuPercent": 0, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpuShares": 0, "CpusetCpus": "", "CpusetMems": "", "DeviceCgroupRules": null, "DeviceRequests": null, "Devices": [], "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IOMaximumBandwidth": 0, "IOMaximumIOps": 0, "IpcMode": "", "Isolation": "", "Links": null, "LogConfig": {"Config": {}, "Type": ""}, "MaskedPaths": null, "Memory": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": -1, "NanoCpus": 0, "NetworkMode": "default", "OomKillDisable": false, "OomScoreAdj": 0, "PidMode": "", "PidsLimit": 0, "PortBindings": {}, "Privileged": false, "PublishAllPorts": false, "ReadonlyPaths": null, "ReadonlyRootfs": false, "RestartPolicy": {"MaximumRetryCount": 0, "Name": "no"}, "SecurityOpt": null, "ShmSize": 0, "UTSMode": "", "Ulimits": [], "UsernsMode": "", "VolumeDriver": "", "VolumesFrom": null}, "Hostname": "", "Image": "busybox", "Labels": {}, "NetworkingConfig": {"EndpointsConfig": {"default": {"Aliases": null, "DNSNames": null, "DriverOpts": null, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "GwPriority": 0, "IPAMConfig": null, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "Links": null, "MacAddress": "", "NetworkID": ""}}}, "OnBuild": null, "OpenStdin": false, "StdinOnce": false, "Tty": false, "User": "", "Volumes": {}, "WorkingDir": ""}')


def request(query: str = "") -> Request:
    """A parsed request with that query string, no headers and no body."""
    return Request(method="GET", path="/", api_version=(1, 44), query=parse_qs(query, keep_blank_values=True),
                   headers=Message(), body=None)  # type: ignore[arg-type]


def test_cli_create_body_is_one_create_options():
    opts = decode.create_options(CLI_BODY, "/web")
    assert opts == CreateOptions(image="alpine", cmd=("echo", "hi"), name="web", env=("A=1",), links=("db:db",),
                                 ports=("8080:80/tcp",), expose=("80/tcp",), auto_remove=True)


def test_sdk_create_body_string_command_binds_and_no_network():
    opts = decode.create_options({"Image": "busybox", "Cmd": "sh -c 'echo a b'", "Volumes": {"/m": {}, "/v": {}},
                                  "Entrypoint": [""], "Hostname": "h", "Domainname": "example.org",
                                  "HostConfig": {"NetworkMode": "none", "Binds": ["/src:/m:ro"], "Memory": 8 << 20}},
                                 None)
    assert opts.cmd == ("sh", "-c", "echo a b")
    assert opts.volumes == ("/v", "/src:/m:ro")  # the SDK lists a bind's target in Volumes too
    assert (opts.entrypoint, opts.hostname, opts.network, opts.memory) == ("", "h.example.org", False, 8 << 20)


@pytest.mark.parametrize("body, message", [
    ([], "Config cannot be empty"),
    ({"Cmd": ["true"]}, "No image was specified"),
    ({"Image": "busybox", "AttachStdin": True}, "AttachStdin needs OpenStdin"),
    ({"Image": "busybox", "HostConfig": {"NetworkMode": "mynet"},
      "NetworkingConfig": {"EndpointsConfig": {"mynet": {}, "other": {}}}}, "pydock starts a container on one network"),
    ({"Image": "busybox", "HostConfig": {"NetworkMode": "mynet"},
      "NetworkingConfig": {"EndpointsConfig": {"mynet": {"Links": ["a:b"]}}}}, "EndpointsConfig.mynet.Links"),
])
def test_create_bodies_refused(body, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode.create_options(body, None)


def test_references():
    assert decode.image_ref("sha256:" + "a" * 64) == "a" * 64
    assert decode.image_ref("docker.io/library/busybox:1") == "busybox:1"
    assert decode.shown_ref("alpine") == "alpine:latest"
    assert decode.shown_ref("alpine:3.10") == "alpine:3.10"
    assert decode.shown_ref("localhost:5000/x") == "localhost:5000/x:latest"
    assert decode.repo_tag("docker.io/library/myimg", "v1") == ("myimg", "v1")
    assert decode.repo_tag("myroot:1.0", None) == ("myroot", "1.0")
    assert decode.repo_tag("", None) == (None, None)


def test_query_values():
    assert decode.filters('{"name":["web"],"status":{"exited":true,"running":false}}') == \
        {"name": ["web"], "status": ["exited"]}
    with pytest.raises(InvalidArgument):
        decode.filters("[1]")
    assert [decode.tail(t) for t in (None, "all", "3", "0", "-1", "x")] == [None, None, 3, 0, None, None]
    assert decode.timestamp("1700000000.5") == 1700000000.5
    with pytest.raises(InvalidArgument, match="Invalid timestamp"):
        decode.timestamp("yesterday")
    assert decode.wait_condition(None) == "not-running"
    with pytest.raises(InvalidArgument, match='invalid condition: "soon"'):
        decode.wait_condition("soon")
    assert decode.signal_number(None) == 9 and decode.signal_number("SIGTERM") == 15
    assert decode.stop_timeout(request("t=-1")) is None and decode.stop_timeout(request("t=2")) == 2
    assert decode.output_streams(request("stdout=1&stderr=0")) == ("stdout",)


def test_commit_config_only_from_json_bodies():
    assert decode.commit_config(request("changes=")) is None
    assert decode.commit_config(request("changes=CMD%20x")) is None  # changes are the runtime's to apply


def test_frames_and_timestamps():
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    rec = LogRecord("stderr", "oops\n", when)
    assert streams.encode(rec, tty=False) == struct.pack(">BxxxL", 2, 5) + b"oops\n"
    assert streams.encode(rec, tty=True) == b"oops\n"
    assert streams.encode(rec, tty=True, timestamps=True) == b"2024-05-06T07:08:09.123456000Z oops\n"
    writes: list[bytes] = []
    streams.copy([rec] * 3, writes.append, tty=True, live=False)
    assert writes == [b"oops\n" * 3]
    writes.clear()
    streams.copy([rec] * 3, writes.append, tty=True)
    assert writes == [b"oops\n"] * 3


def test_the_docker_clis_zeroed_body_asks_for_nothing_refused():
    assert decode.create_options(DOCKER_CLI_ZEROED, None) == CreateOptions(image="busybox", cmd=("true",))


@pytest.mark.parametrize("where, field, value", [
    ("HostConfig", "PidMode", "host"),
    ("HostConfig", "Sysctls", {"net.ipv4.ip_forward": "1"}),
    ("HostConfig", "OomScoreAdj", 500),
    ("HostConfig", "IpcMode", "host"),
    ("Config", "Healthcheck", {"Test": ["CMD", "true"]}),
])
def test_a_field_asking_for_what_pydock_does_not_do_is_refused_by_name(where, field, value):
    body = json.loads(json.dumps(DOCKER_CLI_ZEROED))
    (body["HostConfig"] if where == "HostConfig" else body)[field] = value
    with pytest.raises(InvalidArgument, match=rf"^{where}\.{field} is not supported by pydock \(got "):
        decode.create_options(body, None)


def test_labels_and_stop_signal_are_carried():
    body = {**DOCKER_CLI_ZEROED, "Labels": {"a": "b"}, "StopSignal": "SIGRTMIN+3"}
    opts = decode.create_options(body, None)
    assert (opts.labels, opts.stop_signal) == (("a=b",), "SIGRTMIN+3")
    with pytest.raises(InvalidArgument, match="Labels must be an object of strings"):
        decode.create_options({**body, "Labels": {"a": 1}}, None)
