"""The overlay usability probe runs once per kernel and filesystem, not on every command."""

from __future__ import annotations

from pathlib import Path

from pydock.devmapper import drivers
from pydock.utils.mounttable import mounts_under


def test_a_successful_probe_is_remembered_and_redone_for_another_kernel(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok, _ = drivers.overlay_usable(root)
    assert ok
    marker = root / "overlay" / drivers.PROBE_MARKER
    remembered = marker.read_text()
    assert remembered.split()[0] == __import__("os").uname().release

    marker.write_text("5.4.0-some-other-kernel 1\n")
    ok, _ = drivers.overlay_usable(root)
    assert ok and marker.read_text() == remembered  # probed again, for this kernel
    assert mounts_under(tmp_path) == []
    assert sorted(p.name for p in root.iterdir()) == ["overlay"]  # no probe dirs left behind
