"""The records of a build: what was asked (BuildOptions), where its output goes (BuildOutput), where a
stage stands (StageState), and the error of a failed RUN (its exit status is the build's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydock.runtime.builder.buildargs import BuildArgs
from pydock.utils.errors import PydockError


@dataclass(frozen=True)
class BuildOptions:
    """`build`'s options (the CLI's flags, the API's query), checked by the front end."""

    tags: tuple[str, ...] = ()                              # -t NAME[:TAG]
    build_args: Mapping[str, str | None] = field(default_factory=dict)  # --build-arg K[=V]
    no_cache: bool = False                                  # --no-cache
    target: str | None = None                               # --target STAGE
    labels: Mapping[str, str] = field(default_factory=dict)  # --label K=V
    remove: bool = True                                     # --rm (intermediate containers, after success)
    force_remove: bool = False                              # --force-rm (also after a failure)
    network: bool = True                                    # --network bridge|none for RUN
    insecure_registries: tuple[str, ...] = ()               # for pulling a missing base image


class Sink(Protocol):
    def write(self, data: bytes) -> Any: ...
    def flush(self) -> Any: ...


class BuildOutput(Protocol):
    """Where a build reports: its own lines, RUN's output streams, and each stage's image (the API's
    aux message)."""

    stdout: Sink
    stderr: Sink

    def line(self, text: str) -> None: ...

    def image(self, image_id: str) -> None: ...


@dataclass
class StageState:
    """A stage being built: the image the next step starts from and the config it carries on."""

    name: str | None
    image_id: str | None                    # None: FROM scratch, nothing committed yet
    config: dict[str, Any]
    args: BuildArgs
    author: str = ""                        # MAINTAINER
    cmd_set: bool = False                   # a CMD came in this stage (ENTRYPOINT then keeps it)


class BuildFailed(PydockError):
    """A RUN step's command failed; the build ends with its exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
