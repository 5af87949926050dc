"""Image json in Docker 0.7's shape, and the human-readable helpers the CLI tables use."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from pydock.utils.humanize import ago, human_duration, human_size
from pydock.graph.image import CONFIG_FIELDS, Image, format_time, parse_time
from pydock.utils.errors import StorageError

ID = "a" * 64
PARENT = "b" * 64


def test_graph_image_json_has_docker_keys_and_round_trips():
    created = datetime(2013, 11, 25, 18, 30, 1, 250000, tzinfo=timezone.utc)
    img = Image(id=ID, parent=PARENT, created=created, comment="c", author="me <me@x>",
                container="c" * 64, container_config={"Cmd": ["/bin/sh", "-c", "echo hi"]},
                config={"Cmd": ["/bin/sh"], "Env": ["A=1"], "WorkingDir": "/w"}, size=42)
    data = json.loads(img.to_json())
    assert {"id", "parent", "comment", "created", "container", "container_config", "docker_version",
            "author", "config", "architecture"} <= set(data)
    assert data["created"] == "2013-11-25T18:30:01.25Z"
    assert data["architecture"] == "x86_64"
    assert list(data["config"]) == list(CONFIG_FIELDS)  # every Go field, Go names, Go order
    assert data["config"]["Cmd"] == ["/bin/sh"] and data["config"]["Hostname"] == ""
    back = Image.from_json(img.to_json(), size=42)
    assert back.id == ID and back.parent == PARENT and back.created == created
    assert back.config["WorkingDir"] == "/w" and back.container_config["Cmd"][-1] == "echo hi"
    assert back.size == 42


def test_graph_image_parentless_json_omits_parent():
    data = json.loads(Image(id=ID).to_json())
    assert "parent" not in data
    assert data["config"] is None
    assert Image.from_json(json.dumps(data)).parent is None


def test_graph_image_reads_go_nanosecond_times_and_offsets():
    assert parse_time("2013-11-25T18:30:01.123456789Z") == datetime(2013, 11, 25, 18, 30, 1, 123456,
                                                                    tzinfo=timezone.utc)
    assert parse_time("2013-11-25T20:30:01+02:00") == datetime(2013, 11, 25, 18, 30, 1, tzinfo=timezone.utc)
    assert format_time(datetime(2013, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "2013-01-02T03:04:05Z"


@pytest.mark.parametrize("bad", [
    '{"id": "../../etc"}',
    '{"id": "' + "a" * 64 + '", "parent": "../x"}',
    '{"id": "' + "a" * 64 + '", "created": "yesterday"}',
    "[]",
    "{not json",
])
def test_graph_image_rejects_bad_json(bad):
    with pytest.raises(StorageError):
        Image.from_json(bad)


def test_graph_format_sizes_and_durations_like_docker():
    assert human_size(0) == "0 B"
    assert human_size(999) == "999 B"
    assert human_size(1200000) == "1.2 MB"
    assert human_size(1234567) == "1.235 MB"
    assert human_size(5 * 10**9) == "5 GB"
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(5) == "5 seconds"
    assert human_duration(61) == "About a minute"
    assert human_duration(5 * 60) == "5 minutes"
    assert human_duration(3600) == "About an hour"
    assert human_duration(3 * 3600) == "3 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(21 * 86400) == "3 weeks"
    assert human_duration(120 * 86400) == "4 months"
    assert human_duration(800 * 86400) == "2 years"
    now = datetime.now(timezone.utc)
    assert ago(now - timedelta(minutes=5), now) == "5 minutes ago"
    assert ago(now + timedelta(seconds=3), now) == "Less than a second ago"
