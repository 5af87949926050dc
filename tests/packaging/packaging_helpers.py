"""Shared by the binary and deb tests: an import-everything check."""

from __future__ import annotations

#: `python -c IMPORT_ALL [PATH]`: import every pydock module (from PATH, e.g. the zipapp, if given) and
#: exit 1 naming those that fail - catches code that only works in the dev venv.
IMPORT_ALL = r'''
import importlib, pkgutil, sys
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
import pydock
failed = []
for mod in pkgutil.walk_packages(pydock.__path__, "pydock."):
    if mod.name.rsplit(".", 1)[-1] == "__main__":  # entry points run on import
        continue
    try:
        importlib.import_module(mod.name)
    except ModuleNotFoundError as err:
        # the pytest plugin (pydock.runtime.testing) may need pytest, nothing else may
        if err.name != "pytest" or not mod.name.startswith("pydock.runtime.testing."):
            failed.append(f"{mod.name}: {type(err).__name__}: {err}")
    except Exception as err:
        failed.append(f"{mod.name}: {type(err).__name__}: {err}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
'''
