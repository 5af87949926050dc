"""Each API version gets its own shape of the inspect and list documents, `/info` and `/version`, as moby's
docs/api/version-history.md says: keys added after 1.24 are absent below the version that added them, keys
dropped later are present (with dockerd's old value) below the version that dropped them. Checked with the
real docker SDK's low-level client pinned to each version, and on raw HTTP for the unversioned path."""

from __future__ import annotations

import json

import pytest
from test_api_protocol import call

pytestmark = pytest.mark.lxc

VERSIONS = ("1.24", "1.30", "1.41", "1.44")


@pytest.fixture(scope="module")
def shapes(server):
    """Every document of interest, fetched at each version: a stopped container with a bind mount and a MAC
    address, busybox, an untagged image committed from the container, /info and /version."""
    bind = server.tmp / "bind"
    bind.mkdir(exist_ok=True)
    return server.sdk(f"""
client.images.pull('busybox', tag='latest')
c = client.containers.create('busybox', 'true', volumes={{{str(bind)!r}: {{'bind': '/mnt', 'mode': 'rw'}}}},
                             mac_address='02:42:ac:11:00:09')
untagged = c.commit()
result = {{}}
try:
    for v in {VERSIONS!r}:
        api = docker.APIClient(base_url={server.url!r}, version=v)
        summary = [s for s in api.containers(all=True) if s['Id'] == c.id][0]
        images = {{i['Id']: i for i in api.images()}}
        result[v] = {{'container': api.inspect_container(c.id), 'summary': summary,
                     'image': api.inspect_image('busybox'), 'untagged': images[untagged.id],
                     'busybox': images[api.inspect_image('busybox')['Id']], 'info': api.info(),
                     'version': api.version()}}
finally:
    c.remove()
    client.images.remove(untagged.id)
""")


def _has(doc: dict, path: str) -> bool:
    for step in path.split("."):
        if not isinstance(doc, dict) or step not in doc:
            return False
        doc = doc[step]
    return True


#: (document, key, first version showing it, first version no longer showing it)
EXPECTED = [
    ("container", "HostConfig.AutoRemove", "1.25", None),
    ("container", "HostConfig.NanoCpus", "1.25", None),
    ("container", "HostConfig.MaskedPaths", "1.38", None),
    ("container", "HostConfig.ReadonlyPaths", "1.38", None),
    ("container", "HostConfig.DeviceRequests", "1.40", None),
    ("container", "HostConfig.CgroupnsMode", "1.41", None),
    ("container", "HostConfig.KernelMemory", None, "1.42"),
    ("image", "Metadata", "1.31", None),
    ("image", "VirtualSize", None, "1.44"),
    ("busybox", "VirtualSize", None, "1.44"),
    ("busybox", "SharedSize", "1.25", None),
    ("busybox", "Containers", "1.25", None),
    ("info", "ExecutionDriver", None, "1.25"),
    ("info", "Warnings", "1.39", None),
    ("info", "CgroupVersion", "1.41", None),
    ("info", "KernelMemory", None, "1.42"),
    ("version", "MinAPIVersion", None, None),  # at every version, as dockerd sends it: the CLI reads it
    ("version", "Components", None, None),
]


def _v(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split("."))


@pytest.mark.parametrize("version", VERSIONS)
def test_each_version_has_the_keys_its_history_gives_it(shapes, version):
    docs = shapes[version]
    wrong = []
    for doc, key, since, until in EXPECTED:
        want = (since is None or _v(version) >= _v(since)) and (until is None or _v(version) < _v(until))
        if _has(docs[doc], key) != want:
            wrong.append(f"{doc} {key}: {'missing' if want else 'present'}")
    assert not wrong, f"API {version}: {wrong}"


def test_values_whose_shape_changed(shapes):
    old, mid, late, new = (shapes[v] for v in VERSIONS)
    # a mount's Type arrived with 1.25
    assert "Type" not in old["container"]["Mounts"][0] and "Type" not in old["summary"]["Mounts"][0]
    assert new["container"]["Mounts"][0]["Type"] == "bind" == new["summary"]["Mounts"][0]["Type"]
    # values dockerd showed before it dropped the keys
    assert old["container"]["HostConfig"]["KernelMemory"] == 0 and late["info"]["KernelMemory"] is False
    assert old["info"]["ExecutionDriver"] == "<not supported>"
    # before 1.25, security options are bare names
    assert old["info"]["SecurityOptions"] == ["seccomp"]
    assert new["info"]["SecurityOptions"] == ["name=seccomp,profile=builtin"]
    # an untagged image: `<none>:<none>` before 1.43, empty lists since
    assert mid["untagged"]["RepoTags"] == ["<none>:<none>"] and late["untagged"]["RepoDigests"] == ["<none>@<none>"]
    assert new["untagged"]["RepoTags"] == [] and new["untagged"]["RepoDigests"] == []
    assert new["busybox"]["RepoTags"] == ["busybox:latest"] == old["busybox"]["RepoTags"]
    # the same VirtualSize as Size where it is shown at all
    assert old["image"]["VirtualSize"] == old["image"]["Size"] == new["image"]["Size"]
    # Config.MacAddress: shown when set, at every version
    assert {shapes[v]["container"]["Config"]["MacAddress"] for v in VERSIONS} == {"02:42:ac:11:00:09"}


def test_the_unversioned_path_is_the_newest_version(server):
    for path in ("/info", "/images/busybox/json"):
        _, unversioned = call(server, "GET", path)
        _, newest = call(server, "GET", "/v1.44" + path)
        _, oldest = call(server, "GET", "/v1.24" + path)
        keys = set(json.loads(unversioned))
        assert keys == set(json.loads(newest)), path
        assert keys != set(json.loads(oldest)), path
