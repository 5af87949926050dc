"""pydock's runtime: `from pydock.runtime import Runtime` is the embedding API for test harnesses.

Attributes load lazily so that importing a small module here (errors, ids, paths) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Runtime"]


def __getattr__(name: str) -> Any:
    if name == "Runtime":
        from pydock.runtime.runtime import Runtime  # lazy: `import pydock.runtime.x` stays cheap

        return Runtime
    raise AttributeError(f"module 'pydock.runtime' has no attribute {name!r}")
