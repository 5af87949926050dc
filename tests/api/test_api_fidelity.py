"""Docker's meaning for inputs pydock used to treat its own way, checked through the docker SDK against
`pydock serve`: an image named by its `sha256:` id, an Env entry without `=` (unsets the variable), a
numeric user the image's passwd does not list (runs as that uid, gid 0)."""

from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.lxc


def test_sha256_id_bare_env_and_numeric_user(server):
    r = server.sdk("""
import io
client.images.pull('busybox', tag='latest')  # the built-in image, built on first use
image, _ = client.images.build(fileobj=io.BytesIO(b'FROM busybox\\nENV FOO=from-image KEEP=kept\\n'), rm=True)
out = client.containers.run(image.id, "sh -c 'echo ${FOO-unset} $KEEP $X; id -u; id -g'", user='4242',
                            environment=['FOO', 'X=1'], remove=True, network_mode='none')
c = client.containers.create(image.id, 'true', environment=['FOO'], network_mode='none')
env = c.attrs['Config']['Env']
c.remove()
image.remove()
result = [image.id.startswith('sha256:'), out.decode(), 'FOO' in env, 'KEEP=kept' in env]
""")
    assert r == [True, "unset kept 1\n4242\n0\n", True, True]


def test_labels_and_stop_signal_are_honoured_and_an_unknown_log_driver_is_refused(server):
    cid = server.docker_ok("run", "-d", "--net", "none", "--label", "team=qa", "--stop-signal", "USR1", "busybox",
                           "sh", "-c", "trap 'exit 5' USR1; echo ready; while :; do sleep 0.1; done").strip()
    deadline = time.monotonic() + 30
    while "ready" not in server.docker_ok("logs", cid):
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.05)
    server.docker_ok("stop", cid)
    shown = server.docker_ok("inspect", "--format", "{{.State.ExitCode}} {{.Config.StopSignal}} {{.Config.Labels}}",
                             cid)
    assert shown.strip() == "5 USR1 map[team:qa]"
    assert cid in server.docker_ok("ps", "-aq", "--no-trunc", "--filter", "label=team=qa")
    server.docker_ok("rm", cid)
    # asked for, not done: refused by name, nothing made
    p = server.docker("run", "--log-driver", "syslog", "--net", "none", "busybox", "true")
    assert p.returncode == 125
    assert "logger: no log driver named 'syslog' is registered" in p.stderr.decode()
    assert server.docker_ok("ps", "-aq") == ""


def test_image_prune_through_the_sdk(server):
    r = server.sdk("""
import io
client.images.pull('busybox', tag='latest')
first, _ = client.images.build(fileobj=io.BytesIO(b'FROM busybox\\nLABEL v=1\\n'), tag='pruned:1', rm=True)
second, _ = client.images.build(fileobj=io.BytesIO(b'FROM busybox\\nLABEL v=2\\n'), tag='pruned:1', rm=True)
dangling = client.images.prune()
every = client.images.prune(filters={'dangling': False})
try:
    client.images.prune(filters={'bogus': '1'})
    refused = None
except docker.errors.APIError as e:
    refused = [e.status_code, e.explanation]
result = [dangling['ImagesDeleted'], sorted(d.get('Untagged', '') for d in every['ImagesDeleted']), refused,
          client.images.list(all=True), first.id]
""")
    first = r[4]
    assert r[0] == [{"Deleted": first}]  # the build the tag moved away from
    assert r[1][-2:] == ["busybox:latest", "pruned:1"] and r[3] == []
    assert r[2] == [400, "invalid filter 'bogus'"]


def test_inspect_has_dockers_keys_with_what_pydock_does(server):
    r = server.sdk("""
c = client.containers.create('busybox', 'true', network_mode='none', init=True)
hc, state = c.attrs['HostConfig'], c.attrs['State']
keys = ['CgroupnsMode', 'PidMode', 'Init', 'Isolation', 'MemorySwap', 'MemorySwappiness', 'UTSMode', 'CpusetCpus',
        'Runtime', 'LogConfig', 'VolumeDriver', 'IpcMode', 'ShmSize', 'MaskedPaths', 'ReadonlyPaths', 'CapAdd']
result = [{k: hc[k] for k in keys}, sorted(state), sorted(c.attrs['NetworkSettings'])]
c.remove()
""")
    hc, state, net = r
    assert hc["CgroupnsMode"] == "private" and hc["IpcMode"] == "private" and hc["Init"] is True
    assert hc["Runtime"] == "lxc" and hc["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert hc["ShmSize"] == 64 << 20  # the /dev/shm every container gets
    assert "/proc/kcore" in hc["MaskedPaths"] and "/proc/sys" in hc["ReadonlyPaths"] and hc["CapAdd"] is None
    assert state == sorted(["Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
                            "Error", "StartedAt", "FinishedAt"])
    assert {"IPAddress", "Gateway", "MacAddress", "Networks", "EndpointID", "SandboxKey"} <= set(net)


def test_network_modes_through_the_docker_cli(server):
    host_ns = server.docker_ok("run", "--rm", "--net", "host", "busybox", "stat", "-L", "-c", "%i", "/proc/self/ns/net")
    assert int(host_ns) == os.stat("/proc/self/ns/net").st_ino
    owner = server.docker_ok("run", "-d", "--net", "none", "busybox", "sleep", "30").strip()
    try:  # at once: the join waits for the owner's set-up to end
        joined = server.docker_ok("run", "--rm", "--net", f"container:{owner}", "busybox", "sh", "-c",
                                  "stat -L -c %i /proc/self/ns/net; hostname")
        ns, hostname = joined.split()
        assert hostname == owner[:12] and int(ns) != os.stat("/proc/self/ns/net").st_ino
        mode = server.docker_ok("inspect", "--format", "{{.HostConfig.NetworkMode}}", owner).strip()
        assert mode == "none"
    finally:  # the server is the module's: later tests count its containers
        server.docker_ok("rm", "-f", owner)


def test_capabilities_through_the_docker_cli(server):
    out = server.docker_ok("run", "--rm", "--net", "none", "--cap-drop", "ALL", "--cap-add", "KILL", "busybox",
                           "grep", "CapBnd", "/proc/self/status")
    assert out.split() == ["CapBnd:", "0000000000000020"]  # CAP_KILL alone
    cid = server.docker_ok("create", "--net", "none", "--cap-add", "NET_ADMIN", "busybox", "true").strip()
    assert server.docker_ok("inspect", "--format", "{{.HostConfig.CapAdd}}", cid).strip() == "[CAP_NET_ADMIN]"
    server.docker_ok("rm", cid)


def test_read_only_and_tmpfs_through_the_docker_cli(server):
    out = server.docker_ok("run", "--rm", "--net", "none", "--read-only", "--tmpfs", "/run:size=2m", "busybox",
                           "sh", "-c", "touch /x 2>/dev/null || echo ro; touch /run/y && echo tmpfs-rw")
    assert out == "ro\ntmpfs-rw\n"


def test_hosts_dns_search_groups_ulimits_and_env_file_through_the_docker_cli(server, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nMODE=test\n")
    out = server.docker_ok("run", "--rm", "--net", "none", "--env-file", str(env_file), "--add-host", "db:10.9.8.7",
                           "--dns-search", "example.com", "--group-add", "4242", "--ulimit", "nofile=64:128", "busybox",
                           "sh", "-c", "echo $MODE; grep db /etc/hosts; grep search /etc/resolv.conf; id -G; ulimit -n")
    assert out.splitlines() == ["test", "10.9.8.7\tdb", "search example.com", "0 4242", "64"]


def test_pids_limit_and_cpus_through_the_docker_cli(server):
    out = server.docker("run", "--rm", "--net", "none", "--pids-limit", "3", "--cpus", "0.5", "busybox", "sh", "-c",
                        "for i in 1 2 3 4; do sleep 1 & done; wait")
    assert b"can't fork" in out.stderr
    cid = server.docker_ok("create", "--net", "none", "--pids-limit", "3", "--cpus", "1.5", "busybox", "true").strip()
    shown = server.docker_ok("inspect", "--format", "{{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}", cid)
    assert shown.split() == ["3", "1500000000"]
    server.docker_ok("rm", cid)


def test_volumes_from_through_the_docker_cli(server):
    src = server.docker_ok("run", "-d", "--net", "none", "-v", "/data", "busybox", "sh", "-c",
                           "echo from-src > /data/f").strip()
    assert server.docker_ok("wait", src) == "0\n"
    assert server.docker_ok("run", "--rm", "--net", "none", "--volumes-from", src, "busybox", "cat", "/data/f") == \
        "from-src\n"
    server.docker_ok("rm", "-v", src)


def test_mounts_of_every_type_through_the_sdk(server, tmp_path):
    (tmp_path / "bound").mkdir()
    (tmp_path / "bound" / "in").write_text("from-host\n")
    r = server.sdk(f"""
from docker.types import Mount
out = client.containers.run('busybox', "sh -c 'cat /b/in; touch /b/x 2>/dev/null || echo bind-ro; echo v > /v/f; "
                            "grep \\" /t \\" /proc/mounts | cut -d\\" \\" -f4; ls /anon'",
                            mounts=[Mount('/b', {str(tmp_path / 'bound')!r}, type='bind', read_only=True),
                                    Mount('/v', 'mounted-vol', type='volume'),
                                    Mount('/t', None, type='tmpfs', tmpfs_size=1 << 20),
                                    Mount('/anon', None, type='volume')],
                            remove=True, network_mode='none')
try:
    client.containers.create('busybox', 'true', mounts=[Mount('/b', '/tmp', type='bind', propagation='rshared')])
    refused = None
except docker.errors.APIError as e:
    refused = e.explanation
client.volumes.get('mounted-vol').remove()
result = [out.decode(), refused]
""")
    out, refused = r
    lines = out.splitlines()
    assert lines[:2] == ["from-host", "bind-ro"] and "size=1024k" in lines[2].split(",")
    assert refused == "HostConfig.Mounts[].BindOptions.Propagation is not supported by pydock"


def test_df_and_container_prune_through_the_sdk(server):
    r = server.sdk("""
done = client.containers.run('busybox', 'true', detach=True, network_mode='none')
done.wait()
live = client.containers.run('busybox', 'sleep 60', detach=True, network_mode='none')
df = client.df()
mine = {c['Id']: c for c in df['Containers']}
pruned = client.containers.prune()
left = [c.id for c in client.containers.list(all=True)]
live.remove(force=True)
result = [df['LayersSize'] > 0, sorted(mine) == sorted([done.id, live.id]), 'SizeRw' in mine[done.id],
          [i['Containers'] for i in df['Images']], pruned['ContainersDeleted'] == [done.id], left == [live.id]]
""")
    assert r == [True, True, True, [2], True, True]


def test_restart_policy_through_the_docker_cli(server):
    cid = server.docker_ok("run", "-d", "--net", "none", "--restart", "on-failure:1", "busybox", "sh", "-c",
                           "echo run; exit 4").strip()
    deadline = time.monotonic() + 60
    while server.docker_ok("inspect", "--format", "{{.RestartCount}} {{.State.Status}}", cid).split() != \
            ["1", "exited"]:
        assert time.monotonic() < deadline, "never restarted once and stopped"
        time.sleep(0.1)
    assert server.docker_ok("logs", cid) == "run\nrun\n"
    policy = server.docker_ok("inspect", "--format", "{{.HostConfig.RestartPolicy.Name}}", cid).strip()
    assert policy == "on-failure"
    p = server.docker("run", "--rm", "--restart", "always", "busybox", "true")
    assert p.returncode == 125 and "conflicting options" in p.stderr.decode().lower()
    server.docker_ok("rm", cid)


def test_stop_timeout_through_the_docker_cli(server):
    cid = server.docker_ok("run", "-d", "--net", "none", "--stop-timeout", "1", "busybox", "sleep", "60").strip()
    t0 = time.monotonic()
    server.docker_ok("stop", cid)  # no -t: the container's own timeout
    assert time.monotonic() - t0 < 8
    assert server.docker_ok("inspect", "--format", "{{.Config.StopTimeout}} {{.State.ExitCode}}", cid).split() == \
        ["1", "137"]
    server.docker_ok("rm", cid)
