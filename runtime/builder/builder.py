"""`build`: a Dockerfile and its context into an image, as Docker's classic builder does it.

Stages run in order (each one up to `--target`), every instruction a `Step N/M`; a stage starts from an
image (pulled when missing), an earlier stage or scratch, and runs its base image's ONBUILD triggers
first. The result is the last stage's image, tagged as asked. Intermediate images stay (they are the
cache); intermediate containers go after a successful step (`--rm`) or always (`--force-rm`).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydock.graph.instructions import Instruction, parse_instruction
from pydock.graph.scratch import scratch_dir
from pydock.graph.shellwords import expand_word
from pydock.graph.tags import parse_reference
from pydock.runtime.builder import dockerfile
from pydock.runtime.builder.buildargs import BuildArgs
from pydock.runtime.builder.cache import BuildCache
from pydock.runtime.builder.context import BuildContext
from pydock.runtime.builder.state import BuildOptions, BuildOutput, StageState
from pydock.runtime.builder.steps import Steps, onbuild_triggers
from pydock.runtime.options import DEFAULT_PATH
from pydock.utils.errors import InvalidArgument, NotFound, PydockError

log = logging.getLogger(__package__)

BUILT_IN = ("busybox", "busybox:latest")


def check_tags(tags: tuple[str, ...]) -> list[tuple[str, str]]:
    """(repo, tag) of every `-t` (checked before anything is built)."""
    out = []
    for name in tags:
        try:
            out.append(parse_reference(name))
        except InvalidArgument as err:
            raise InvalidArgument(f'invalid argument "{name}" for "-t, --tag" flag: {err}') from None
    return out


def _platform_check(text: str | None, meta: dict[str, str]) -> None:
    """`FROM --platform=`: only this host's platform can be built here."""
    if not text:
        return
    from pydock.graph.distribution import manifest  # lazy: the platform names, only with --platform

    host_os, arch, variant = manifest.host_platform()
    host = f"{host_os}/{arch}" + (f"/{variant}" if variant else "")
    auto = {"BUILDPLATFORM": host, "TARGETPLATFORM": host, "BUILDOS": host_os, "TARGETOS": host_os,
            "BUILDARCH": arch, "TARGETARCH": arch}
    value = expand_word(text, {**auto, **meta})
    if value not in (host_os, f"{host_os}/{arch}", host):
        raise InvalidArgument(f"FROM --platform={value}: only this host's platform ({host}) can be built here")


class _Build:
    """One build: its stages' results, the cache, the scratch dir."""

    def __init__(self, rt: Any, context: BuildContext, options: BuildOptions, out: BuildOutput,
                 stack: ExitStack) -> None:
        self.rt = rt
        self.context = context
        self.options = options
        self.out = out
        self.stack = stack
        self.cache = BuildCache(rt.images.graph, enabled=not options.no_cache)
        self.results: list[str | None] = []
        self.names: dict[str, int] = {}
        self._scratch: Path | None = None

    def scratch(self) -> Path:
        if self._scratch is None:
            self._scratch = self.stack.enter_context(scratch_dir(self.rt.layout.graph_tmp))
        return self._scratch

    def stage_image(self, ref: str) -> str | None:
        """The image an earlier stage made (`--from=name` or `--from=N`); KeyError if `ref` names none."""
        if ref.lower() in self.names:
            return self.results[self.names[ref.lower()]]
        if ref.isdigit():
            index = int(ref)
            if index == len(self.results):
                raise InvalidArgument(f"invalid from flag value {ref}: refers to current build stage")
            if index > len(self.results):
                raise InvalidArgument(f"invalid from flag value {ref}: index out of bounds")
            return self.results[index]
        raise KeyError(ref)

    def resolve_image(self, name: str) -> Any:
        """A base image by reference: here already, the built-in busybox, or pulled (as Docker's build)."""
        image = self.rt.images.lookup(name)
        if image is not None:
            return image
        if name in BUILT_IN:
            return self.rt.images.resolve(name)
        from pydock.graph.distribution.pull import pull  # lazy: the distribution client, only for a missing base

        def progress(p: Any) -> None:
            if not p.id:
                self.out.line(p.status)
            elif not p.total:
                self.out.line(f"{p.id}: {p.status}")

        try:
            return pull(self.rt.images, name, progress=progress, insecure=self.options.insecure_registries).image
        except PydockError as err:
            raise NotFound(f"Unable to find image '{name}' locally, and pulling it failed: {err}") from None

    def run(self) -> str:
        df = dockerfile.parse(self.context.dockerfile)
        meta, stages = dockerfile.stages(df, self.options.target)
        labels = tuple(Instruction("LABEL", pairs=((k, v),), original=f"LABEL {k}={v}", extra={"verbatim": True})
                       for k, v in sorted(self.options.labels.items()))
        if labels:
            stages[-1] = replace(stages[-1], commands=stages[-1].commands + labels)
        for warning in df.warnings:
            self.out.line(f"[WARNING]: {warning}")
        total = len(meta) + sum(1 + len(s.commands) for s in stages)
        step = 0
        args = BuildArgs(self.options.build_args)

        def announce(inst: Instruction) -> None:
            nonlocal step
            step += 1
            self.out.line(f"Step {step}/{total} : {inst.original}")

        for inst in meta:
            announce(inst)
            env = args.values()
            for word in inst.args:
                key, eq, value = word.partition("=")
                args.declare_meta(expand_word(key, env, df.escape), expand_word(value, env, df.escape) if eq else None)
        steps = Steps(self.rt, self.out, self.options, self.cache, df.escape, self.context, self.stage_image,
                      self.resolve_image, self.scratch)
        state: StageState | None = None
        for stage in stages:
            announce(stage.source)
            state = self.begin(stage, args.for_stage(), df.escape)
            triggers = list(onbuild_triggers(state))
            if triggers:
                self.out.line(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
                for trigger in triggers:
                    try:
                        inst = parse_instruction(trigger)
                    except InvalidArgument as err:
                        raise InvalidArgument(f"ONBUILD trigger {trigger!r}: {err}") from None
                    steps.dispatch(state, inst)
            self.out.line(f" ---> {(state.image_id or '')[:12]}")
            for inst in stage.commands:
                announce(inst)
                steps.dispatch(state, inst)
                self.out.line(f" ---> {(state.image_id or '')[:12]}")
            if state.image_id:
                self.out.image(state.image_id)
            if stage.name:
                self.names[stage.name] = len(self.results)
            self.results.append(state.image_id)
        unused = args.unused()
        if unused:
            self.out.line(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        if state is None or not state.image_id:
            raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
        return state.image_id

    def begin(self, stage: dockerfile.Stage, args: BuildArgs, escape: str) -> StageState:
        """A stage's starting point: its base image (or stage, or scratch) and that image's config."""
        meta = args.meta_values()
        _platform_check(stage.platform, meta)
        name = expand_word(stage.base, meta, escape)
        if not name:
            raise InvalidArgument(f"base name ({stage.base}) should not be blank")
        if name.lower() in self.names:
            image_id = self.results[self.names[name.lower()]]
        elif name == "scratch":
            image_id = None
        else:
            image_id = self.resolve_image(name).id
        config = dict(self.rt.images.graph.get(image_id).config or {}) if image_id else {}
        config["OpenStdin"] = config["StdinOnce"] = False
        env = list(config.get("Env") or [])
        if not any(item.split("=", 1)[0] == "PATH" for item in env):
            env.append(f"PATH={DEFAULT_PATH}")
        config["Env"] = env
        return StageState(stage.name, image_id, config, args)


def build(rt: Any, context: BuildContext, options: BuildOptions, out: BuildOutput) -> str:
    """Build the context's Dockerfile; the image's id, tagged with `options.tags`."""
    tags = check_tags(options.tags)
    with ExitStack() as stack:
        image_id = _Build(rt, context, options, out, stack).run()
    out.line(f"Successfully built {image_id[:12]}")
    for repo, tag in tags:
        rt.images.tags.set(repo, tag, image_id, force=True)
        out.line(f"Successfully tagged {repo}:{tag}")
    return image_id
