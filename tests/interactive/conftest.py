"""Fixtures for the interactive tests: the shared CLI root (overlay, busybox imported) as `root` (the tmux
terminal, `term`, is the suite's: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def root(cli_root: Path) -> Path:
    """The CLI root of tests/conftest.py (overlay, busybox imported)."""
    return cli_root
