"""The one place pydock's version lives (read by pyproject, `pydock version` and the packagers), and the
build facts a packaged build carries."""

from __future__ import annotations

from types import ModuleType

VERSION = "0.1.0"
API_VERSION = "1.44"


def build_info() -> ModuleType | None:
    """`pydock.utils.buildinfo` (GIT_COMMIT, BUILD_FLAVOUR, INIT_SHA256 ...), which hack/make.sh binary
    and deb generate into the bundles they build; None in a source checkout, which has none."""
    try:
        from pydock.utils import buildinfo  # type: ignore[attr-defined]  # lazy: exists in packaged builds only
    except ImportError:
        return None
    return buildinfo
