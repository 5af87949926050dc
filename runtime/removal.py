"""Taking a container apart: its devices, names, address, files and anonymous volumes.

`destroy` is the one teardown (a failed create's rollback, a half-made container's sweep, `rm`);
`remove_stopped` is `rm` of a container whose monitor lock the caller holds; `auto_remove` is the
one place a `--rm` container goes, called by whoever ends its run (its monitor, the foreground
`run`, or the process that recovers it after its monitor died).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from pydock.runtime import netattach
from pydock.runtime.container import Container
from pydock.utils import afterwards
from pydock.utils.errors import PydockError

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)


def destroy(rt: Runtime, c: Container, made: Sequence[str] = ("name", "device")) -> None:
    """Undo a create: devices, names, directory. Each step is best effort so a half-made container goes.
    The image's shared init layer stays (it goes with the image); an init layer of the container's own
    (made before they were shared) goes with it."""
    own = (c.id, c.init_id) if c.init_id == c.own_init_id else (c.id,)
    for device in own:
        try:
            if rt.driver.exists(device):
                rt.driver.remove(device)
        except PydockError as err:
            log.warning("container %s: could not remove device %s: %s", c.short_id, device, err)
    if netattach.has_networks(rt):  # it leaves the user networks it was made a member of
        try:
            rt.user_networks.forget(c.id)
        except PydockError as err:
            log.warning("container %s: could not leave its networks: %s", c.short_id, err)
    if "name" in made:
        try:
            rt.names.purge(c.id)
        except PydockError as err:
            log.warning("container %s: could not drop its names: %s", c.short_id, err)
    for entry in made:
        if entry.startswith("volume:"):  # an anonymous volume this create made
            shutil.rmtree(entry.removeprefix("volume:"), ignore_errors=True)
    afterwards.discard_tree(c.dir, rt.layout.trash)  # gone from listings at once, deleted after the answer
    afterwards.discard_tree(rt.layout.lxc / c.id, rt.layout.trash)


def release_address(rt: Runtime, c: Container) -> None:
    """Give the container's addresses (and veths, port rules) back, on the bridge and its user networks
    (whose members' hosts files then lose its line); idempotent."""
    try:
        netattach.release(rt, c)
    except PydockError as err:
        log.warning("container %s: could not release its user network addresses: %s", c.short_id, err)
    if not rt.uses_network(c):
        return
    try:
        rt.network.release(c.id)
    except PydockError as err:  # a warning only when an address was recorded (else none was taken)
        log.log(logging.WARNING if c.network else logging.DEBUG,
                "container %s: could not release its address: %s", c.short_id, err)


def remove_stopped(rt: Runtime, c: Container, volumes: bool) -> None:
    """Remove `c`, which is not running; the caller holds its monitor lock (no run can begin meanwhile)."""
    release_address(rt, c)
    destroy(rt, c)
    if volumes:  # its anonymous volumes, unless --volumes-from shares one; named ones stay, as under Docker
        anonymous = [info for info in map(rt.volumes.owner_of, c.volumes.values()) if info and info.anonymous]
        if anonymous:
            from pydock.runtime.volumes import users  # lazy: only a container with anonymous volumes looks

            used = users(rt)
            for info in anonymous:
                if info.name in used:
                    log.info("volume %s stays: containers %s use it", info.name, ", ".join(used[info.name]))
                else:
                    rt.volumes.delete(info)


def auto_remove(rt: Runtime, c: Container) -> None:
    """End of a `--rm` container's run (monitor lock held): remove it with its anonymous volumes, as
    Docker does; a failure is recorded in its State.Error, where `wait --condition removed` finds it."""
    try:
        remove_stopped(rt, c, volumes=True)
    except PydockError as err:
        log.warning("container %s: auto-remove failed: %s", c.short_id, err)
        try:
            with c.locked():
                c.save_state(replace(c.state, error=f"failed to remove container {c.short_id}: {err}"))
        except PydockError as err2:
            log.debug("container %s: could not record the failed auto-remove: %s", c.short_id, err2)
