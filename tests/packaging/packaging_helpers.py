"""Shared by the binary and deb tests: a network namespace lxc can work in, and an import-everything check."""

from __future__ import annotations

# unshare --net alone leaves /sys showing the host's interfaces (sysfs belongs to the namespace that
# mounted it), and lxc looks the bridge up there: so also take a private mount namespace, mount a
# fresh sysfs for the new netns, and put the host's cgroup tree back under it (lxc needs that too).
_SETUP = (
    'ip link set lo up'
    ' && keep=$(mktemp -d) && mount --rbind /sys/fs/cgroup "$keep"'
    ' && mount -t sysfs sysfs /sys && mount --rbind "$keep" /sys/fs/cgroup'
    ' && umount -l "$keep" && rmdir "$keep"'
    ' && exec "$@"'
)

IN_NETNS = ["unshare", "--net", "--mount", "--propagation", "slave", "--", "sh", "-c", _SETUP, "sh"]


#: `python -c IMPORT_ALL [PATH]`: import every pydock module (from PATH, e.g. the zipapp, if given) and
#: exit 1 naming those that fail - catches code that only works in the dev venv.
IMPORT_ALL = r'''
import importlib, pkgutil, sys
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
import pydock
failed = []
for mod in pkgutil.walk_packages(pydock.__path__, "pydock."):
    last = mod.name.rsplit(".", 1)[-1]
    if last == "__main__" or "pytest" in last:  # entry points run on import; pytest plugins need pytest
        continue
    try:
        importlib.import_module(mod.name)
    except Exception as err:
        failed.append(f"{mod.name}: {type(err).__name__}: {err}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
'''
