"""Fixtures for the interactive tests: the shared CLI root (overlay, busybox imported) as `root`, and a
tmux terminal per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tty_helpers import NO_TMUX, TMUX, Tmux


@pytest.fixture
def root(cli_root: Path) -> Path:
    """The CLI root of tests/conftest.py (overlay, busybox imported)."""
    return cli_root


@pytest.fixture
def term() -> Iterator[Tmux]:
    if TMUX is None:
        pytest.skip(NO_TMUX)
    t = Tmux()
    try:
        yield t
    finally:
        t.close()
