"""tests/hack: the build and test scripts themselves (hack/make.sh, hack/dmkernel.sh)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "uml: boots User-Mode Linux itself (hack/dmkernel.sh, a few seconds each); runs in the host tier")
