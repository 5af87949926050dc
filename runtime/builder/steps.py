"""What each instruction does to a stage (Docker's classic dispatchers): config instructions commit an
image with an empty layer, WORKDIR one with the directory it makes, COPY/ADD one with the copied files,
RUN one with what its container changed. Before doing anything a step asks the cache whether an image
made from the same parent by the same step exists (` ---> Using cache`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydock.graph.image import CONFIG_FIELDS
from pydock.graph.instructions import (DEFAULT_SHELL, Instruction, apply_config, command_line, expand,
                                       normalize_workdir)
from pydock.graph.shellwords import env_map, expand_word
from pydock.runtime.builder import copying
from pydock.runtime.builder.cache import BuildCache
from pydock.runtime.builder.context import SourceTree
from pydock.runtime.builder.state import BuildFailed, BuildOptions, BuildOutput, StageState
from pydock.runtime.options import CreateOptions
from pydock.utils.errors import InvalidArgument, LaunchError, NotFound, PydockError

log = logging.getLogger(__package__)

#: keys an image made by a build always carries besides Docker 0.7's Config fields (None when unset), so
#: a commit replaces every value of the RUN container's own config with the build's
_EXTRA_KEYS = ("Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell")


def go_list(values: list[str]) -> str:
    """A list as Go's `%q` prints it (`["a" "b"]`): Docker's history text for CMD and ENTRYPOINT."""
    return "[" + " ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def image_config(state: StageState) -> dict[str, Any]:
    """The config an image of this stage gets (the stage's run config; its parent as `Image`)."""
    cfg: dict[str, Any] = {**CONFIG_FIELDS, **dict.fromkeys(_EXTRA_KEYS), **state.config}
    cfg["Image"] = state.image_id or ""
    return cfg


class Steps:
    """Dispatches the instructions of one build."""

    def __init__(self, rt: Any, out: BuildOutput, options: BuildOptions, cache: BuildCache, escape: str,
                 context: SourceTree, stage_image: Callable[[str], str | None],
                 resolve_image: Callable[[str], Any], scratch: Callable[[], Path]) -> None:
        self.rt = rt
        self.out = out
        self.options = options
        self.cache = cache
        self.escape = escape
        self.context = context
        self.stage_image = stage_image        # name or index of an earlier stage -> its image (KeyError: none)
        self.resolve_image = resolve_image    # an image reference -> Image (pulled when missing)
        self.scratch = scratch                # a private work dir for the build (downloads)

    # ---- helpers ----------------------------------------------------------------------------------
    def env(self, state: StageState) -> dict[str, str]:
        """What `$VAR` means in an instruction: the config's Env, then the stage's build args."""
        out = state.args.values()
        out.update(env_map(state.config.get("Env")))
        return out

    def _probe(self, state: StageState, comment: str, single: bool = False) -> dict[str, Any]:
        shell = list(state.config.get("Shell") or DEFAULT_SHELL)
        probe = dict(state.config)
        probe["Cmd"] = [*shell, "#(nop) " + comment] if single else [*shell, "#(nop) ", comment]
        return probe

    def _cached(self, state: StageState, probe: dict[str, Any]) -> bool:
        hit = self.cache.probe(state.image_id, probe)
        if hit is None:
            return False
        self.out.line(" ---> Using cache")
        state.image_id = hit
        return True

    def _register(self, state: StageState, stream: Any, probe: dict[str, Any]) -> None:
        image = self.rt.images.create(stream, parent=state.image_id, author=state.author,
                                      config=image_config(state), container_config=probe)
        self.cache.add(image)
        state.image_id = image.id

    def commit(self, state: StageState, comment: str) -> None:
        """A config-only step: an image with an empty layer and the stage's config (unless cached)."""
        probe = self._probe(state, comment)
        if not self._cached(state, probe):
            self._register(state, None, probe)

    # ---- dispatch ---------------------------------------------------------------------------------
    def dispatch(self, state: StageState, inst: Instruction) -> None:
        kw = inst.keyword
        if kw not in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK", "ONBUILD", "MAINTAINER", "ARG") \
                and not inst.extra.get("verbatim"):
            inst = expand(inst, self.env(state), self.escape)
        if kw == "RUN":
            self.run(state, inst)
        elif kw in ("COPY", "ADD"):
            self.copy(state, inst)
        elif kw == "WORKDIR":
            self.workdir(state, inst)
        elif kw == "ARG":
            self.arg(state, inst)
        elif kw == "MAINTAINER":
            state.author = inst.args[0]
            self.commit(state, f"MAINTAINER {inst.args[0]}")
        elif kw == "FROM":
            raise InvalidArgument("FROM starts a stage; it is not a step")  # pragma: no cover - stages() splits
        else:
            self.config_step(state, inst)

    def config_step(self, state: StageState, inst: Instruction) -> None:
        """CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME."""
        kw = inst.keyword
        state.config = apply_config(state.config, inst, state.cmd_set)
        cfg = state.config
        if kw == "CMD":
            state.cmd_set = state.cmd_set or bool(inst.args)
            comment = f"CMD {go_list(cfg.get('Cmd') or [])}"
        elif kw == "ENTRYPOINT":
            comment = f"ENTRYPOINT {go_list(cfg.get('Entrypoint') or [])}"
        elif kw in ("ENV", "LABEL"):
            comment = kw + "".join(f" {k}={v}" for k, v in inst.pairs)
        elif kw == "EXPOSE":
            comment = "EXPOSE " + " ".join(inst.args)
        elif kw in ("VOLUME", "SHELL"):
            comment = f"{kw} [{' '.join(inst.args)}]"
        elif kw == "HEALTHCHECK":
            comment = f"HEALTHCHECK {json.dumps(cfg.get('Healthcheck'), sort_keys=True)}"
        elif kw == "ONBUILD":
            comment = f"ONBUILD {inst.trigger}"
        else:  # USER, STOPSIGNAL
            comment = f"{kw} {inst.args[0]}"
        self.commit(state, comment)

    def arg(self, state: StageState, inst: Instruction) -> None:
        env = self.env(state)
        declared = []
        for word in inst.args:
            key, eq, value = word.partition("=")
            key = expand_word(key, env, self.escape)
            default = expand_word(value, env, self.escape) if eq else None
            declared.append((key, default))
        for key, default in declared:
            state.args.declare(key, default)
        self.commit(state, "ARG " + " ".join(k if v is None else f"{k}={v}" for k, v in declared))

    # ---- RUN --------------------------------------------------------------------------------------
    def run(self, state: StageState, inst: Instruction) -> None:
        argv = command_line(inst, state.config)
        run_env = state.args.run_env(state.config.get("Env"))
        recorded = state.args.recorded(run_env)
        probe = dict(state.config)
        probe["Cmd"] = [f"|{len(recorded)}", *recorded, *argv] if recorded else argv
        if probe["Cmd"]:
            probe["Entrypoint"] = None
        if self._cached(state, probe):
            return
        if state.image_id is None:  # RUN straight after FROM scratch: an empty image to run on
            self._register(state, None, self._probe(state, "(scratch)"))
        opts = CreateOptions(image=state.image_id, cmd=tuple(argv), entrypoint="", env=tuple(run_env),
                             network=self.options.network)
        c = self.rt.create(opts)
        self.out.line(f" ---> Running in {c.short_id}")
        committed = False
        interrupted = False
        try:
            try:
                code = self.rt.run_created(c, stdout=self.out.stdout, stderr=self.out.stderr).exit_code
                failure = ""
            except LaunchError as err:
                if err.exit_code not in (126, 127):
                    raise
                code, failure = err.exit_code, f": {err}"
            if code != 0:
                raise BuildFailed(f"The command '{' '.join(argv)}' returned a non-zero code: {code}{failure}", code)
            image = self.rt.commit(c, author=state.author, config=image_config(state), container_config=probe)
            self.cache.add(image)
            state.image_id = image.id
            committed = True
        except PydockError:
            raise
        except BaseException:
            interrupted = True  # a cancelled build removes its container, as Docker's does
            raise
        finally:
            if self.options.force_remove or interrupted or (self.options.remove and committed):
                self._remove(c)

    def _remove(self, c: Any) -> None:
        try:
            self.rt.remove(c, force=True, volumes=True)
        except NotFound:
            return
        except PydockError as err:
            self.out.line(f"Removing intermediate container {c.short_id}: {err}")
            return
        self.out.line(f" ---> Removed intermediate container {c.short_id}")

    # ---- files ------------------------------------------------------------------------------------
    def workdir(self, state: StageState, inst: Instruction) -> None:
        path = normalize_workdir(state.config.get("WorkingDir") or "", inst.args[0])
        state.config = {**state.config, "WorkingDir": path}
        probe = self._probe(state, f"WORKDIR {path}", single=True)
        if self._cached(state, probe):
            return
        with ExitStack() as stack:
            parent = stack.enter_context(self.rt.driver.mounted(state.image_id, readonly=True)) \
                if state.image_id else None
            chunks = list(copying.make_dirs(parent, path))
        self._register(state, io.BytesIO(b"".join(chunks)) if chunks else None, probe)

    def copy(self, state: StageState, inst: Instruction) -> None:
        kw = inst.keyword
        chown, chmod_text, source_stage = inst.flag("chown"), inst.flag("chmod"), inst.flag("from")
        chmod = copying.parse_chmod(chmod_text)
        dest = copying.normalize_dest(state.config.get("WorkingDir") or "", inst.args[-1])
        with ExitStack() as stack:
            tree = self.context if source_stage is None else self._from_tree(source_stage, stack)
            sources = []
            for path in inst.args[:-1]:
                if kw == "ADD" and path.startswith(("http://", "https://")):
                    sources.append(self._download(path, dest))
                else:
                    sources.extend(copying.collect(tree, [path], kw, unpack=kw == "ADD"))
            if len(sources) > 1 and not dest.endswith("/"):
                raise InvalidArgument(f"When using {kw} with more than one source file, the destination must be "
                                      "a directory and end with a /")
            flags = (f"--chown={chown} " if chown else "") + (f"--chmod={chmod_text} " if chmod_text else "")
            probe = self._probe(state, f"{kw} {flags}{copying.source_hash(sources)} in {dest} ", single=True)
            if self._cached(state, probe):
                return
            parent = stack.enter_context(self.rt.driver.mounted(state.image_id, readonly=True)) \
                if state.image_id else None
            owner = copying.parse_chown(chown, parent) if chown else None if source_stage else copying.Owner(0, 0)
            stream = io.BufferedReader(copying.ChunkReader(copying.layer(parent, dest, sources, owner, chmod, kw)),
                                       buffer_size=1 << 20)
            self._register(state, stream, probe)

    def _from_tree(self, ref: str, stack: ExitStack) -> SourceTree:
        """`COPY --from=`: an earlier stage (by name or index) or an image, mounted read-only."""
        try:
            image_id = self.stage_image(ref)
            what = f"stage {ref}"
        except KeyError:
            image_id = self.resolve_image(ref).id
            what = f"image {ref}"
        if image_id is None:
            empty = self.scratch() / f"empty-{os.urandom(4).hex()}"
            empty.mkdir()
            return SourceTree(empty, None, what)
        return SourceTree(stack.enter_context(self.rt.driver.mounted(image_id, readonly=True)), None, what)

    def _download(self, url: str, dest: str) -> copying.Source:
        """ADD URL: the file fetched into the build's scratch dir (mode 0600, mtime Last-Modified), not unpacked."""
        from email.utils import parsedate_to_datetime  # lazy: ADD URL only

        from pydock.graph.urlsource import open_url  # lazy: ADD URL only

        name = posixpath.basename(url.split("?", 1)[0].split("#", 1)[0].rstrip("/")) if "://" in url else ""
        if "/" not in url.split("://", 1)[1].rstrip("/"):
            name = ""
        if not name:
            if dest.endswith("/"):
                raise InvalidArgument(f"ADD failed: cannot determine filename for source {url}")
            name = "__unnamed__"
        where = self.scratch() / f"download-{os.urandom(4).hex()}"
        where.mkdir()
        try:
            with open_url(url) as (stream, _length):
                modified = getattr(stream, "headers", {}).get("Last-Modified")
                with open(where / name, "xb") as f:
                    os.fchmod(f.fileno(), 0o600)
                    while chunk := stream.read(1 << 20):
                        f.write(chunk)
        except PydockError as err:
            raise type(err)(f"ADD failed: {err}") from None
        mtime = 0.0
        if modified:
            try:
                mtime = parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                log.debug("ADD %s: unparsable Last-Modified %r; mtime 0", url, modified)
        os.utime(where / name, (mtime, mtime))
        tree = SourceTree(where, None, f"download of {url}")
        (source,) = copying.collect(tree, [name], "ADD", unpack=False)
        return replace(source, name=name)


def onbuild_triggers(state: StageState) -> Iterator[str]:
    """The base image's ONBUILD triggers, taken out of the stage's config (they run once, here)."""
    triggers = list(state.config.get("OnBuild") or [])
    if triggers:
        state.config = {**state.config, "OnBuild": None}
    yield from triggers
