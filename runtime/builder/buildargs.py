"""Build arguments: `--build-arg` values, the ARGs a Dockerfile declares (before FROM: for FROM lines;
in a stage: for the stage's instructions and RUN's environment), and Docker's predefined proxy args,
which pass through without an ARG and stay out of the image's history unless declared."""

from __future__ import annotations

from collections.abc import Mapping

#: usable without an ARG line (Docker's builtinAllowedBuildArgs)
PREDEFINED = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
              "no_proxy", "ALL_PROXY", "all_proxy")


class BuildArgs:
    """The arguments of a build; `for_stage` gives each stage its own declared set."""

    def __init__(self, given: Mapping[str, str | None]) -> None:
        #: `--build-arg K=V` (None: named, but neither a value nor a client variable of that name)
        self.given = dict(given)
        self.declared: dict[str, str | None] = {}
        self.meta: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def for_stage(self) -> BuildArgs:
        """The args a new stage starts with: the meta ARGs known, nothing declared in it yet."""
        out = BuildArgs(self.given)
        out.meta = dict(self.meta)
        out.referenced = self.referenced  # shared: the unused-args warning looks at every stage
        return out

    def declare(self, key: str, default: str | None) -> None:
        self.declared[key] = default
        self.referenced.add(key)

    def declare_meta(self, key: str, default: str | None) -> None:
        self.declare(key, default)
        self.meta[key] = default

    def _values(self, source: dict[str, str | None]) -> dict[str, str]:
        """Docker's rule: a given value wins, then the declared default, then (for an ARG declared without
        one) the meta ARG's; an ARG with none of these is unset."""
        out = {}
        for key in [*source, *PREDEFINED]:
            if self.given.get(key) is not None:
                out[key] = self.given[key]
            elif source.get(key) is not None:
                out[key] = source[key]
            elif self.meta.get(key) is not None:
                out[key] = self.meta[key]
        return out

    def values(self) -> dict[str, str]:
        """The declared args (and given proxy args) with their values: what instructions substitute."""
        return self._values(self.declared)

    def meta_values(self) -> dict[str, str]:
        """The ARGs before FROM with their values: what FROM lines substitute."""
        return self._values(self.meta)

    def run_env(self, env: list[str] | None) -> list[str]:
        """`K=V` of the args a RUN gets in its environment: those its config's Env does not set."""
        have = {item.split("=", 1)[0] for item in env or []}
        return [f"{k}={v}" for k, v in self.values().items() if k not in have]

    def recorded(self, run_env: list[str]) -> list[str]:
        """The part of `run_env` a RUN's history shows and its cache compares: undeclared proxy args left
        out (they must not change the image), sorted."""
        return sorted(item for item in run_env
                      if item.split("=", 1)[0] in self.declared or item.split("=", 1)[0] not in PREDEFINED)

    def unused(self) -> list[str]:
        """`--build-arg` names no ARG declared (proxy args aside)."""
        return sorted(k for k in self.given if k not in self.referenced and k not in PREDEFINED)
