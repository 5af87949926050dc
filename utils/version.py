"""The one place pydock's version lives (read by pyproject, `pydock version` and the packagers)."""

VERSION = "0.1.0"
API_VERSION = "1.44"
