"""The init layer a container stands on: the mount-point stubs between its image and its own device
(etcfiles.write_init_layer). They depend on the image alone, so each image has one, made when its
first container is created and shared by all of them (it goes with the image: graph.derived_device).
A container made before init layers were shared keeps its own, `<id>-init` (Container.init_id).
"""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING

from pydock.runtime import etcfiles
from pydock.utils.errors import PydockError
from pydock.utils.fileutil import flocked

if TYPE_CHECKING:
    from pydock.runtime.runtime import Runtime

#: names the stubs' recipe: a pydock that makes other stubs makes (and uses) init layers of its own
RECIPE = f"{zlib.crc32(repr((etcfiles.RUNTIME_DIRS, etcfiles.INIT_DIRS, etcfiles.INIT_FILES)).encode()):08x}"
PURPOSE = f"init-{RECIPE}"
log = logging.getLogger(__package__)


def ensure(rt: Runtime, image_id: str) -> str:
    """The image's init layer, made now if it has none (or one a crash left half-made)."""
    device = rt.graph.derived_device(image_id, PURPOSE)
    if rt.driver.initialized(device):
        return device
    rt.layout.init.mkdir(mode=0o700, parents=True, exist_ok=True)
    with flocked(rt.layout.init / "init-layers.lock"):  # one maker per root; the others then find it made
        if rt.driver.initialized(device):
            return device
        if rt.driver.exists(device):
            rt.driver.remove(device)
        rt.driver.create(device, image_id)
        try:
            with rt.driver.mounted(device) as root:
                etcfiles.write_init_layer(root)
            rt.driver.set_initialized(device)
        except BaseException:
            try:
                rt.driver.remove(device)
            except PydockError as err:  # the next create finds it half-made and makes it again
                log.warning("init layer %s: not removed after a failed make: %s", device, err)
            raise
    return device
