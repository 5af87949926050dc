"""`container prune` and `image prune` with Docker's filters: until (a duration or a time), label,
label!, images' dangling; an unknown filter refused with Docker's message."""

from __future__ import annotations

import time

import pytest

from pydock.runtime.usage import PruneFilters, parse_filter_flags, parse_until, prune_containers, prune_images
from pydock.utils.errors import InvalidArgument

pytestmark = pytest.mark.lxc


def test_until_reads_durations_unix_times_and_dates():
    now = 1_700_000_000.0
    assert parse_until("90m", now) == now - 5400 and parse_until("1h30m", now) == now - 5400
    assert parse_until("1500ms", now) == now - 1.5
    assert parse_until("1600000000.5", now) == 1600000000.5
    assert parse_until("2024-05-06T07:08:09Z", now) == 1714979289.0
    with pytest.raises(InvalidArgument, match="invalid until filter 'soon'"):
        parse_until("soon", now)


def test_filter_keys_as_docker_takes_them():
    assert parse_filter_flags(["label!=a=b", "label=c", "until=1h"]) == {"label!": ["a=b"], "label": ["c"],
                                                                          "until": ["1h"]}
    with pytest.raises(InvalidArgument, match="^invalid filter 'name'$"):
        PruneFilters.parse({"name": ["x"]})
    with pytest.raises(InvalidArgument, match="^invalid filter 'dangling'$"):
        PruneFilters.parse({"dangling": ["true"]})  # containers have no such filter
    assert PruneFilters.parse({"dangling": ["false"]}, images=True).dangling is False


def test_container_prune_by_label_and_until(rt):
    keep = rt.create("busybox", ["true"], network=False, labels=("keep=yes", "team=a"))
    team = rt.create("busybox", ["true"], network=False, labels=("team=a",))
    other = rt.create("busybox", ["true"], network=False, labels=("team=b",))
    plain = rt.create("busybox", ["true"], network=False)
    removed, _ = prune_containers(rt, PruneFilters.parse({"label": ["team"], "label!": ["keep=yes"]}))
    assert set(removed) == {team.id, other.id}
    removed, _ = prune_containers(rt, PruneFilters.parse({"until": ["1h"]}))  # made just now: too new
    assert removed == []
    time.sleep(0.01)
    removed, _ = prune_containers(rt, PruneFilters.parse({"until": [str(time.time())]}))
    assert set(removed) == {keep.id, plain.id}


def test_image_prune_filters(rt):
    c = rt.create("busybox", ["true"], network=False)
    labelled = rt.commit(c, repo="labelled", tag="1", config={"Labels": {"stage": "test"}})
    plain = rt.commit(c, repo="plain", tag="1")
    rt.remove(c)
    lines, _ = prune_images(rt, PruneFilters.parse({"dangling": ["false"], "label": ["stage=test"]}, images=True))
    assert f"Deleted: {labelled.id}" in lines and all(plain.id not in line for line in lines)
    lines, _ = prune_images(rt, PruneFilters.parse({"dangling": ["false"], "until": ["1h"]}, images=True))
    assert all(plain.id not in line for line in lines)  # made just now: too new for until=1h
    assert rt.images.get("plain:1").id == plain.id
