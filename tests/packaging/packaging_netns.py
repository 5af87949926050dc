"""Run a packaged pydock inside a network namespace of its own, seen the way lxc needs it."""

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
