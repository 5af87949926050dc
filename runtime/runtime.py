"""The Runtime: the service layer every front end uses (the CLI, the Engine API, the pytest plugin,
embedders), gluing storage, images, names, network and the lxc launcher (Docker 0.7's runtime.go).

    with Runtime(tmpdir, bridge="none") as rt:
        c = rt.create("busybox", ["echo", "hi"])
        rt.start(c)
        rt.wait(c)

Several processes may use one root at once: container files are written atomically under a
per-container lock, names live in SQLite, and a running container is supervised by exactly one
process (a detached monitor, or the foreground `run`) that holds its monitor lock (monitorlock.py).
Whoever finds a container marked running without a live monitor repairs it (reconcile.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TypeVar

from pydock.devmapper.driver import Driver
from pydock.devmapper.drivers import open_driver
from pydock.runtime import monitorlock, notify
from pydock.runtime.container import Container
from pydock.runtime.launcher import START_WAIT, container_command, container_processes, signal_container, \
    wait_for_command
from pydock.runtime.options import CreateOptions
from pydock.runtime.volumes import VolumeStore
from pydock.utils import afterwards
from pydock.utils.errors import Conflict, InvalidArgument, NotFound, PydockError, RemovalFailed
from pydock.utils.signals import parse_signal
from pydock.utils.ids import is_valid_id, resolve_prefix
from pydock.utils.paths import RootLayout, check_private_root
from pydock.utils.process import proc_start_time

if TYPE_CHECKING:
    from pydock.runtime.attach import AttachSession, Hello
    from pydock.runtime.jsonlog import LogReader, LogRecord
    from pydock.runtime.exec import ExecConfig
    from pydock.runtime.rows import ContainerRow
    from pydock.runtime.stats import Sample

log = logging.getLogger(__package__)

T = TypeVar("T")

DEFAULT_STOP_TIMEOUT = 10
#: what `wait` can wait for (Docker's `wait --condition`).
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
#: longest pause between two looks while waiting for another process's change.
_POLL_CAP = 0.1


class RunResult(NamedTuple):
    """What a one-shot `Runtime.run` gives back (stdout/stderr are empty when streamed to sinks)."""

    exit_code: int
    stdout: bytes
    stderr: bytes


class Runtime:
    """One pydock root: containers, images (on one storage driver), names, network."""

    def __init__(self, root: str | os.PathLike, driver: str | None = None, *, prefix: str | None = None,
                 deviceset: Any = None, bridge: str = "pydock0", icc: bool = True,
                 bip: str | None = None, storage_options: dict | None = None, names: Any = None) -> None:
        """`driver` names the storage driver to open (default: the best this kernel has); `deviceset`
        is an already open DeviceSet to use instead (the pytest plugin's prefixed view of a shared
        pool); `names` an open name database to share (the API server's threads share one)."""
        self.layout = RootLayout(Path(root).absolute())
        self.layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_private_root(self.layout.root)
        self.layout.containers.mkdir(mode=0o700, exist_ok=True)
        afterwards.later(lambda: afterwards.empty_trash(self.layout.trash))  # what a crash left there
        if deviceset is None:
            options = dict(storage_options or {})
            if prefix:
                options["prefix"] = prefix
            self.driver, self.driver_reason = open_driver(self.layout.root, driver, **options)
            self._owns_driver = True
        else:
            self.driver = Driver(deviceset, self.layout.driver_home(deviceset.name))
            self.driver_reason = f"{deviceset.name}: given by the caller"
            self._owns_driver = False
        self.bridge = bridge
        self.icc = icc
        self.bip = bip
        self._images: Any = None
        self._names: Any = names
        self._owns_names = names is None
        self._network: Any = None
        self._closed = False

    # ---- owned services (opened lazily: `pydock run` must not pay for what it does not use) ----
    @property
    def images(self) -> Any:
        """The ImageStore (graph + tags); `images.resolve("busybox")` builds busybox when missing."""
        if self._images is None:
            from pydock.graph.lookup import ImageStore  # lazy: the image graph, only for commands that use images

            self._images = ImageStore(self.layout, self.driver, users=self._image_users)
            self._images.on_event = self._image_event
        return self._images

    def _image_event(self, action: str, actor: str, attributes: dict[str, str]) -> None:
        """Record an image event (the ImageStore's hook) in the root's journal (events.py)."""
        from pydock.runtime.events import record  # lazy: json lines, only when something happens

        record(self.layout.root, "image", action, actor, **attributes)

    @property
    def graph(self) -> Any:
        return self.images.graph

    @property
    def volumes(self) -> VolumeStore:
        """The root's named and anonymous volumes (`<root>/volumes`)."""
        return VolumeStore(self.layout.volumes)

    @property
    def names(self) -> Any:
        """The SQLite name/link graph (`<root>/linkgraph.db`)."""
        if self._names is None:
            from pydock.links.graphdb import GraphDB  # lazy: sqlite3 only for commands that need names

            self._names = GraphDB(self.layout.linkgraph)
        return self._names

    @property
    def network(self) -> Any:
        if self._network is None:
            from pydock.links.network import NetworkManager  # lazy: pyroute2 is heavy; `-b none` never needs it

            self._network = NetworkManager(self.layout, bridge=self.bridge, icc=self.icc, bip=self.bip)
        return self._network

    @property
    def networking(self) -> bool:
        return bool(self.bridge) and self.bridge != "none"

    def close(self) -> None:
        """Close the name database and forget this process's storage bookkeeping (mounts of running
        containers belong to their monitors and stay)."""
        if self._closed:
            return
        self._closed = True
        if self._names is not None and self._owns_names:
            self._names.close()
        if self._owns_driver:
            self.driver.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- lookup ---------------------------------------------------------------------------
    def container_ids(self, prefix: str = "") -> list[str]:
        """Ids of every container directory (complete or not), or of those starting with `prefix`."""
        try:
            return [n for n in os.listdir(self.layout.containers) if n.startswith(prefix) and is_valid_id(n)]
        except FileNotFoundError:
            return []

    def load(self, container_id: str) -> Container:
        """The container's record as written (NotFound if it has none); no repair."""
        return Container.load(self.layout.container(container_id))

    def lookup(self, container_id: str) -> Container | None:
        """The container's current record (a dead monitor repaired), or None once it is removed."""
        try:
            c = self.refresh(self.load(container_id))
        except NotFound:
            return None
        return c if c.dir.exists() else None

    def get(self, name_or_id: str) -> Container:
        """By name first (`web` or `/web`, also `/parent/alias`), then by id or unique id prefix."""
        if not name_or_id:
            raise NotFound("No such container: ")
        path = name_or_id if name_or_id.startswith("/") else "/" + name_or_id
        try:
            entity = self.names.get(path)
        except PydockError as err:
            log.debug("name lookup of %s failed (%s); trying ids", path, err)
            entity = None
        if entity and (self.layout.container(entity) / "config.json").exists():
            c = self.lookup(entity)
            if c is not None:
                return c
        cid = resolve_prefix(name_or_id, self.container_ids(name_or_id), "container")
        c = self.lookup(cid)
        if c is None:
            raise NotFound(f"No such container: {name_or_id}")
        return c

    def containers(self, all: bool = False) -> list[Container]:
        """Containers, newest first (only running ones unless `all`); dead monitors are repaired on the way."""
        from pydock.runtime.listindex import ListingIndex  # lazy: only listings read the index; run stays lean

        found = self._listed(ListingIndex(self.layout.containers_index, self.layout.containers), ListingIndex.load)
        out = []
        for c in found:
            if c.state.running:  # only a container recorded running can need a repair
                self.refresh(c)
                if not c.dir.exists():
                    continue  # a --rm container whose dead monitor was just repaired: removed
            if all or c.state.running:
                out.append(c)
        out.sort(key=lambda c: c.created, reverse=True)
        return out

    def container_rows(self, all: bool = False) -> list[ContainerRow]:
        """What `containers` lists, as listing rows (rows.py: from their own index, without a Container
        each); a row whose status is live carries its container, loaded and repaired as `containers` does."""
        from pydock.runtime.listindex import RowIndex  # lazy: see containers
        from pydock.runtime.rows import row_of  # lazy: see containers

        out = []
        for row in self._listed(RowIndex(self.layout.container_rows_index, self.layout.containers), RowIndex.row):
            if row.status:
                if all:  # a settled status is never a running container's
                    out.append(row)
                continue
            try:  # running or restarting: its status (and a dead monitor) needs the container
                c = self.refresh(self.load(row.id))
            except (NotFound, KeyError):
                continue  # removed meanwhile
            if c.dir.exists() and (all or c.state.running):  # gone: a --rm container whose dead monitor was just repaired
                out.append(row_of(c))
        out.sort(key=attrgetter("created_us"), reverse=True)
        return out

    def _listed(self, index: Any, read: Callable[[Any, str], T]) -> list[T]:
        """`read(index, id)` of every container through a listing index (listindex.py), which is then
        saved; a container being created or removed, or left half-made by a crash, is swept instead."""
        found = []
        try:
            try:
                names = index.ids()
            except FileNotFoundError:
                names = []
            for cid in names:
                try:
                    found.append(read(index, cid))
                except (NotFound, KeyError):
                    from pydock.runtime import reconcile  # lazy: crash repair, rarely needed; see refresh

                    reconcile.sweep_incomplete(self, cid)  # being created/removed now, or left half-made by a crash
        finally:
            index.save()  # before any repair below changes a container the index shares values with
        return found

    def names_of(self, c: Container | ContainerRow) -> list[str]:
        """Every name path pointing at the container (`/web`, `/app/db`)."""
        try:
            return self.names.ref_paths(c.id)  # sorted there: primary `/x` before links `/p/x`
        except PydockError as err:
            log.debug("names of %s unreadable (%s); showing its own", c.short_id, err)
            return [c.name] if c.name else []

    def refresh(self, c: Container) -> Container:
        """If `c` claims to run but its monitor is gone, repair it now (or mark it Ghost if busy)."""
        if c.state.running and not monitorlock.held(c.monitor_lock_path):
            from pydock.runtime import reconcile  # lazy: only a dead monitor's container (keeps stop, ps, inspect lean)

            reconcile.recover(self, c)
        return c

    def _event(self, c: Container, action: str, **attributes: Any) -> None:
        """Record a container event in the root's journal (events.py)."""
        from pydock.runtime.events import container_event  # lazy: json lines, only when something happens

        container_event(self.layout.root, c, action, **attributes)

    def _current(self, c: Container | str) -> Container:
        if isinstance(c, str):
            return self.get(c)
        return self.refresh(c.reload())

    def _image_users(self) -> dict[str, str]:
        """Image id -> the id of a container made from it (what blocks rmi), from one read of each."""
        users: dict[str, str] = {}
        for cid in self.container_ids():
            try:
                users.setdefault(self.load(cid).image, cid)
            except (NotFound, KeyError):
                continue  # being created or removed: not a user
        return users

    def uses_network(self, c: Container) -> bool:
        """Whether `c` gets (and so must give back) an address on the bridge."""
        return self.networking and not c.config.get("NetworkDisabled") \
            and (c.hostconfig.get("NetworkMode") or "default") == "default"

    # ---- create / start / run -------------------------------------------------------------
    def create(self, image: str | CreateOptions, cmd: Sequence[str] | None = None, **options: Any) -> Container:
        """Make a container (not started): `create(CreateOptions(...))`, or for embedders
        `create("busybox", ["echo", "hi"], name="web")` with CreateOptions' field names."""
        from pydock.runtime.create import create_container  # lazy: links' and ports' parsers

        if not isinstance(image, CreateOptions):
            image = CreateOptions.of(image, cmd, **options)
        elif cmd is not None or options:
            raise InvalidArgument("create: give either a CreateOptions or an image with options, not both")
        c = create_container(self, image)
        self._event(c, "create")
        return c

    def start(self, c: Container | str) -> None:
        """Start `c` under a detached monitor process that outlives the caller; returns once launched."""
        self._start(c, (), None)

    def start_attached(self, c: Container | str, hello: Hello,
                       winsize: tuple[int, int] | None = None) -> AttachSession:
        """Start `c` with a session joined before the command runs (`start -a`, `run -it`, the API's
        attach-then-start), so nothing it asked for is missed; `winsize`: a `-t` terminal's first size
        (rows, columns)."""
        (session,) = self._start(c, (hello,), winsize)
        return session

    def _start(self, c: Container | str, hellos: Sequence[Hello],
               winsize: tuple[int, int] | None) -> list[AttachSession]:
        from pydock.runtime import supervise  # lazy: lxc launch machinery, off the path of `ps`

        c = self._current(c)
        if not c.state.running:
            # a user's start (never the monitor's restart, which a stop racing it must still end) clears
            # the stop and begins the count again, as Docker's does
            c.stopped_by_user_marker.unlink(missing_ok=True)
            if c.state.restart_count:
                with c.locked():
                    c.save_state(dataclasses.replace(c.state, restart_count=0))
        try:
            sessions = supervise.start_detached(self, c, hellos, winsize)
        finally:
            notify.changed()
        if c.dir.exists():
            c.reload()
        return sessions

    def attach(self, c: Container | str, hello: Hello) -> AttachSession:
        """Join the running container's stdio through its supervisor's attach socket (the session's
        WELCOME says whether it has a tty). Conflict if it is not running or paused."""
        from pydock.runtime.attach import connect  # lazy: sockets, only for attach

        c = self._current(c)
        if not c.state.running:
            raise Conflict("You cannot attach to a stopped container, start it first")
        if self.paused(c):
            raise Conflict("You cannot attach to a paused container, unpause it first")
        return connect(c.dir, hello, f"Container {c.short_id}")

    def exec(self, c: Container | str, cfg: ExecConfig, *, stdin: Any = None, stdout: Any = None,
             stderr: Any = None, detach: bool = False) -> int | None:
        """Run `cfg.cmd` in the running container `c` (all its namespaces, cgroup, capabilities, seccomp
        profile, environment): in the foreground on the given stdio, its exit status; or detached, None."""
        from pydock.runtime import exec as execution  # lazy: lxc-attach machinery, only for exec

        c = self._current(c)
        if self.paused(c):
            raise Conflict(f"Container {c.short_id} is paused, unpause the container before exec")
        argv = execution.command_line(self, c, cfg)  # every error before anything runs
        command = " ".join(cfg.cmd)
        self._event(c, f"exec_create: {command}")
        self._event(c, f"exec_start: {command}")
        if detach:
            execution.start_detached(argv)
            return None
        code = execution.run(argv, cfg, stdin=stdin, stdout=stdout, stderr=stderr)
        self._event(c, "exec_die", exitCode=code)
        return code

    def run(self, image: str | CreateOptions, cmd: Sequence[str] | None = None, *, remove: bool = False,
            stdin: Any = None, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
            proxy_signals: bool = False, **options: Any) -> RunResult:
        """Create and run a container in this process (it is its own monitor); collect or stream its
        output. With `remove` (or CreateOptions.auto_remove) it is removed when it ends, as `run --rm`."""
        if isinstance(image, CreateOptions):
            opts = dataclasses.replace(image, auto_remove=image.auto_remove or remove)
            if cmd is not None or options:
                raise InvalidArgument("run: give either a CreateOptions or an image with options, not both")
        else:
            opts = CreateOptions.of(image, cmd, auto_remove=remove, **options)
        return self.run_created(self.create(opts), stdin=stdin, stdout=stdout, stderr=stderr,
                                proxy_signals=proxy_signals)

    def run_created(self, c: Container, *, stdin: Any = None, stdout: BinaryIO | None = None,
                    stderr: BinaryIO | None = None, proxy_signals: bool = False) -> RunResult:
        """Run created container `c` in this process, as `run` does once it has made it (the builder
        names the container before its RUN step's output starts)."""
        from pydock.runtime import supervise  # lazy: see start
        from pydock.runtime.restart import RestartPolicy  # lazy: see stop

        if RestartPolicy.of(c.hostconfig).restarts:
            raise InvalidArgument("a restart policy needs a detached container (run -d, or create then start): "
                                  "without a daemon, only a detached monitor outlives the command to restart it")
        code, out, err = supervise.run_foreground(self, c, stdin=stdin, stdout=stdout, stderr=stderr,
                                                  proxy_signals=proxy_signals)
        return RunResult(code, out, err)

    # ---- wait / stop / kill -----------------------------------------------------------------
    def wait(self, c: Container | str, timeout: float | None = None, *, condition: str = "not-running",
             cancelled: Callable[[], bool] | None = None) -> int:
        """Block until `c` meets `condition`; the exit code of its last run.

        `not-running`: it is not running; `next-exit`: the run current now (or, if it is not running,
        the next one) has ended; `removed`: it is gone. TimeoutError once `timeout` seconds pass;
        InterruptedError as soon as `cancelled()` says so while nothing runs; RemovalFailed when a
        `--rm` container's removal failed (condition `removed`)."""
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f'invalid condition: "{condition}"')
        c = self._current(c)
        deadline = None if timeout is None else time.monotonic() + timeout
        initial = (c.state.running, c.state.started_at)
        last = c.state.exit_code
        with monitorlock.RunWatch(c.monitor_lock_path) as watch:  # opened first: it outlives a removal
            delay = 0.005
            while True:
                seen = notify.generation()
                try:
                    c.reload()
                except NotFound:
                    code = watch.exit_code()
                    return last if code is None else code
                st = c.state
                last = st.exit_code
                left = None if deadline is None else deadline - time.monotonic()
                if st.running:
                    if not monitorlock.held(c.monitor_lock_path):
                        from pydock.runtime import reconcile  # lazy: see refresh

                        reconcile.recover(self, c)
                        continue
                    if left is not None and left <= 0:
                        raise TimeoutError(f"container {c.short_id} still running after {timeout}s")
                    watch.released(left)
                    continue
                if condition == "not-running" or condition == "next-exit" and \
                        (initial[0] or st.started_at != initial[1]):
                    return st.exit_code
                if condition == "removed" and st.error:
                    raise RemovalFailed(st.error, st.exit_code)
                if cancelled is not None and cancelled():
                    raise InterruptedError(f"wait for container {c.short_id} cancelled")
                if left is not None and left <= 0:
                    raise TimeoutError(f"container {c.short_id} did not {condition} within {timeout}s")
                notify.wait(seen, delay if left is None else min(delay, left))
                delay = min(delay * 2, _POLL_CAP)

    def kill(self, c: Container | str, sig: int | str = signal.SIGKILL, *, start_wait: float = START_WAIT) -> None:
        """Send `sig` to the container's command; SIGKILL is recorded as exit 137 whatever lxc reports.
        A container still being set up gets it once its command runs, if that is within `start_wait`
        seconds; Conflict ("still starting") otherwise."""
        c = self._current(c)
        signum = parse_signal(sig)
        if not c.state.running:
            raise Conflict(f"Container {c.short_id} is not running")
        self._event(c, "kill", signal=signum)  # before it is sent, so before the die it may cause
        c.stopped_by_user_marker.touch()  # whatever the signal, as dockerd: no restart policy revives it
        if signum == signal.SIGKILL:
            c.killed_marker.touch()
        if not signal_container(c.state.pid, c.state.pid_start, signum, wait_command=start_wait):
            c.reload()
            if c.state.running:
                raise Conflict(f"Container {c.short_id} is still starting; try again")
        if signum == signal.SIGKILL and self.paused(c):  # a frozen process dies only once thawed
            try:
                self._thaw(c)
            except Conflict:  # it ended meanwhile: the cgroup v2 freezer lets a SIGKILL through
                log.debug("kill %s: it ended before its thaw", c.short_id)

    def stop(self, c: Container | str, timeout: float | None = None) -> None:
        """The image's StopSignal (default SIGTERM), then SIGKILL after `timeout` seconds (Docker's stop;
        None: the container's --stop-timeout, else 10)."""
        c = self._current(c)
        if timeout is None:
            timeout = float(c.config.get("StopTimeout") or DEFAULT_STOP_TIMEOUT)
        if not c.state.running:
            from pydock.runtime.restart import RestartPolicy  # lazy: only a stop of a stopped container asks

            if RestartPolicy.of(c.hostconfig).restarts:
                c.stopped_by_user_marker.touch()  # between two runs: its monitor must not start another
            return
        self._stop(c, timeout)
        self._event(c, "stop")

    def _stop(self, c: Container, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:  # a container still being set up gets the signal once its command runs, within the timeout
            self.kill(c, c.config.get("StopSignal") or signal.SIGTERM, start_wait=timeout)
        except Conflict as err:
            log.debug("stop %s: %s; the SIGKILL below retries", c.short_id, err)
        try:
            self.wait(c, timeout=max(0.0, deadline - time.monotonic()))
            return
        except TimeoutError:
            log.debug("stop %s: still running after %ss; killing it", c.short_id, timeout)
        self._kill_and_wait(c)

    def _kill_and_wait(self, c: Container, timeout: float = 30) -> None:
        """SIGKILL until the container is down (retrying while it is still starting); Conflict if it won't die."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.kill(c, signal.SIGKILL)
            except Conflict as err:
                log.debug("kill %s: %s; retrying", c.short_id, err)
            try:
                self.wait(c, timeout=0.5)
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise Conflict(f"Container {c.short_id} did not stop after SIGKILL") from None

    # ---- pause ------------------------------------------------------------------------------
    def paused(self, c: Container) -> bool:
        """Whether the running container's processes are frozen (the kernel's word, not a record)."""
        if not c.state.running:
            return False
        from pydock.runtime import freezer  # lazy: cgroup files, only where pause matters

        init = container_command(c.state.pid)  # not yet exec'd: never paused (see _init_pid)
        return init is not None and freezer.is_frozen(init)

    def pause(self, c: Container | str) -> None:
        """Freeze every process of the running container (`pause`)."""
        from pydock.runtime import freezer  # lazy: see paused

        c = self._current(c)
        init = self._init_pid(c)
        if freezer.is_frozen(init):
            raise Conflict(f"Container {c.short_id} is already paused")
        freezer.set_frozen(init, True, f"Container {c.short_id}")
        self._event(c, "pause")

    def unpause(self, c: Container | str) -> None:
        """Thaw a paused container (`unpause`)."""
        c = self._current(c)
        if not self.paused(c):
            raise Conflict(f"Container {c.short_id} is not paused")
        self._thaw(c)
        self._event(c, "unpause")

    def _thaw(self, c: Container) -> None:
        from pydock.runtime import freezer  # lazy: see paused

        freezer.set_frozen(self._init_pid(c), False, f"Container {c.short_id}")

    def _init_pid(self, c: Container, start_wait: float = START_WAIT) -> int:
        """Host pid of the running container's PID 1 once it runs the command (in the container's own
        cgroups: before its exec lxc's clone is still in lxc's monitor cgroup, which must never be
        frozen or measured); waits up to `start_wait` after a start (as kill does). Conflict if it
        does not run."""
        if c.state.running:
            init = wait_for_command(c.state.pid, c.state.pid_start, start_wait)
            if init is not None:
                return init
            if not c.state.pid_start or proc_start_time(c.state.pid) == c.state.pid_start:  # lxc-start runs
                raise Conflict(f"Container {c.short_id} is still starting; try again")
        raise Conflict(f"Container {c.short_id} is not running")

    def stats(self, c: Container | str) -> Sample:
        """A reading of the running container's resource counters (`stats`); Conflict if it does not run."""
        from pydock.runtime import stats  # lazy: cgroup files, only for stats

        c = self._current(c)
        found = stats.sample(self._init_pid(c))
        if found is None:
            raise Conflict(f"Container {c.short_id} is not running")
        return found

    def restart(self, c: Container | str, timeout: float | None = None) -> None:
        c = self._current(c)
        self.stop(c, timeout)
        self.start(c)

    # ---- remove ---------------------------------------------------------------------------
    def remove(self, c: Container | str, force: bool = False, volumes: bool = False) -> None:
        """Delete a stopped container (or kill it first with `force`): devices, names, files, network."""
        c = self._current(c)
        if c.state.running:
            if not force:
                raise Conflict("Impossible to remove a running container, please stop it first or use -f")
            self._kill_and_wait(c)
        lock = monitorlock.acquire(c.monitor_lock_path, lambda: c.reload().state.running, c.short_id)
        try:
            c.reload()  # NotFound if its own auto-remove got there first
            from pydock.runtime import removal  # lazy: only rm (network release, volumes, storage)

            removal.remove_stopped(self, c, volumes)
            self._event(c, "destroy")
        finally:
            os.close(lock)
            notify.changed()

    def remove_link(self, path: str) -> None:
        """`rm --link /parent/alias`: drop that name (and its iptables holes when networking)."""
        from pydock.links.linking import remove_link  # lazy: only `rm --link` needs it

        link = remove_link(self.names, path)
        if not self.networking:
            return
        try:
            parent = self.load(link.parent_id)
            child = self.load(link.child_id)
        except NotFound as err:
            log.debug("rm --link %s: %s; no rules to close", path, err)
            return
        if parent.network and child.network:
            self.network.disable_link(parent.network["IPAddress"], child.network["IPAddress"],
                                      child.config.get("ExposedPorts") or {})

    def reconcile(self) -> list[str]:
        """Repair every container left running by a dead monitor, release leaked addresses, purge
        names of containers that no longer exist; the ids repaired."""
        from pydock.runtime import reconcile  # lazy: see refresh

        return reconcile.reconcile_all(self)

    # ---- inspection -------------------------------------------------------------------------
    def logs(self, c: Container | str, follow: bool = False, *, streams: Sequence[str] = ("stdout", "stderr"),
             tail: int | None = None, since: float | None = None, until: float | None = None,
             reader: LogReader | None = None, next_run: bool = False,
             cancelled: Callable[[], bool] | None = None) -> Iterator[LogRecord]:
        """The container's log records of `streams`, oldest first: only the last `tail` of them, only
        those within [since, until] (seconds since the epoch). With `follow`, then the new ones as they
        come, until the run current now ends (with `next_run`, if it is not running, until the next
        run ends: an attach before a start; `cancelled()` ends that wait). `reader`: a LogReader the
        caller opened earlier (so nothing written after that is missed). A log the container does not
        keep (`--log-driver none`) is refused at once, before any record is asked for; an attach (a
        `reader` given) follows the run's output as far as the log has it."""
        from pydock.runtime.jsonlog import LogReader, check_readable  # lazy: only `logs` and attach read the log

        c = self._current(c)
        if reader is None:
            check_readable(c.hostconfig.get("LogConfig"))
        return self._log_records(c, follow, streams, tail, since, until, reader or LogReader(c.log_path),
                                 next_run, cancelled)

    def _log_records(self, c: Container, follow: bool, streams: Sequence[str], tail: int | None,
                     since: float | None, until: float | None, reader: LogReader, next_run: bool,
                     cancelled: Callable[[], bool] | None) -> Iterator[LogRecord]:
        initial = (c.state.running, c.state.started_at)

        def chosen(records: list[LogRecord]) -> list[LogRecord]:
            return [r for r in records if r.stream in streams and (since is None or r.timestamp >= since)
                    and (until is None or r.timestamp <= until)]

        try:
            first = [r for r in reader.read() if r.stream in streams]
            if tail is not None:
                first = first[len(first) - tail:] if 0 < tail < len(first) else first if tail else []
            yield from chosen(first)
            if not follow or not (initial[0] or next_run):
                return
            yield from self._follow(c.id, reader, initial, chosen, cancelled)
        finally:
            reader.close()

    def _follow(self, cid: str, reader: LogReader, initial: tuple[bool, Any],
                chosen: Callable[[list[LogRecord]], list[LogRecord]],
                cancelled: Callable[[], bool] | None) -> Iterator[LogRecord]:
        """New records until the run current at `initial` (or the next one) has ended and is drained."""
        watch: monitorlock.RunWatch | None = None
        delay = 0.005
        try:
            while True:
                seen = notify.generation()
                fresh = self.lookup(cid)
                st = fresh.state if fresh is not None else None
                if st is None or not st.running and (initial[0] or st.started_at != initial[1]):
                    yield from chosen(reader.read())  # ended (or removed): what is left, then done
                    return
                new = chosen(reader.read())
                if new:
                    yield from new
                    delay = 0.005
                if st.running:
                    watch = watch or monitorlock.RunWatch(fresh.monitor_lock_path)  # type: ignore[union-attr]
                    watch.released(delay)
                else:
                    if cancelled is not None and cancelled():
                        return
                    notify.wait(seen, delay)
                delay = min(delay * 2, _POLL_CAP)
        finally:
            if watch is not None:
                watch.close()

    def rename(self, c: Container | str, new_name: str) -> None:
        """Give the container another name (`rename`): its name in the graph moves, the links made to it
        (edges to its id) stay, and its record says the new name."""
        from pydock.links.names import validate_name  # lazy: only rename

        c = self._current(c)
        new = validate_name(new_name)
        old = c.name
        if not old:
            raise Conflict(f"Container {c.short_id} has no name to change")
        if old == new:
            raise Conflict(f"Renaming a container with the same name as its current name: {new.lstrip('/')}")
        self.names.rename(old, new)
        try:
            with c.locked():
                c.name = new
                c.save()
        except BaseException:
            self.names.rename(new, old)  # the record is the old one still: so is the name
            raise
        from pydock.runtime.netattach import renamed  # lazy: only rename

        renamed(self, c)
        notify.changed()
        self._event(c, "rename", oldName=old.lstrip("/"))

    def inspect(self, c: Container | str) -> dict[str, Any]:
        c = self._current(c)
        data = c.to_json()
        data["HostConfig"] = c.hostconfig
        if isinstance(data.get("State"), dict):
            data["State"]["Paused"] = self.paused(c)
        return data

    def diff(self, c: Container | str) -> list[Any]:
        """Changes of the container's filesystem against its init layer (`A|C|D /path`)."""
        from pydock.runtime.layers import diff  # lazy: the archive package, only for diff/commit/export

        return diff(self.driver, self._current(c))

    def size(self, c: Container | str) -> tuple[int, int]:
        """(bytes changed in the container, that plus its image's virtual size) for `ps -s`."""
        from pydock.runtime.layers import changed_bytes  # lazy: see diff

        c = self._current(c)
        rw = changed_bytes(self.driver, c)
        try:
            virtual = self.graph.virtual_size(self.graph.get(c.image))
        except PydockError as err:
            log.debug("virtual size of %s unknown: %s", c.short_id, err)
            virtual = 0
        return rw, rw + virtual

    def commit(self, c: Container | str, repo: str | None = None, tag: str | None = None, *,
               comment: str = "", author: str = "", config: dict[str, Any] | None = None,
               container_config: dict[str, Any] | None = None, changes: Sequence[str] = (),
               pause: bool = False) -> Any:
        """A new image from the container's changes on its image (whiteouts for deletions); its
        container_config is the container's own unless given (the builder records its step there).

        `config` is merged over the container's Config, then `changes` (Dockerfile instructions, as
        `commit --change`) apply; with `pause` a running container is frozen while its changes are read,
        as `docker commit` does by default, so the image is one moment of it."""
        from pydock.graph.instructions import apply_changes  # lazy: the Dockerfile parser, only with --change
        from pydock.runtime.layers import export_changes_to  # lazy: see diff

        c = self._current(c)
        merged = dict(c.config)
        if config:
            merged.update(config)
        merged = apply_changes(merged, list(changes)) or merged
        frozen = pause and c.state.running and not self.paused(c)
        if frozen:
            from pydock.runtime import freezer  # lazy: see paused

            freezer.set_frozen(self._init_pid(c), True, f"Container {c.short_id}")
        try:
            from tempfile import TemporaryFile  # lazy: only commit; keeps shutil and random off other commands

            with TemporaryFile(dir=self.layout.root) as buf:
                export_changes_to(self.driver, c, buf)
                buf.seek(0)
                return self.images.create(buf, parent=c.image, repo=repo, tag=tag, comment=comment,
                                          author=author, config=merged, container=c.id,
                                          container_config=c.config if container_config is None
                                          else container_config)
        finally:
            if frozen:
                self._thaw(c)

    def export(self, c: Container | str, out: BinaryIO) -> None:
        """The container's whole filesystem as a tar stream."""
        from pydock.runtime.layers import export_tree  # lazy: see diff

        export_tree(self.driver, self._current(c), out)

    def top(self, c: Container | str) -> tuple[list[str], list[list[str]]]:
        """`ps -f` columns and rows for the container's processes (host pids)."""
        c = self._current(c)
        if not c.state.running:
            raise Conflict(f"Container {c.short_id} is not running")
        pids = container_processes(c.state.pid)
        if not pids:
            return [], []
        out = subprocess.run(["ps", "-f", "-p", ",".join(map(str, pids))], capture_output=True, text=True,
                             check=False).stdout.splitlines()
        if not out:
            return [], []
        header = out[0].split()
        return header, [line.split(None, len(header) - 1) for line in out[1:]]

    def update(self, c: Container | str, opts: Any) -> list[str]:
        """Change a container's resource limits and restart policy (`update`), running or not: an
        `update.UpdateOptions`; Docker's warnings (none)."""
        from pydock.runtime.update import update_container  # lazy: only for update

        return update_container(self, self._current(c), opts)

    def container_files(self, c: Container | str, name: str | None = None) -> Any:
        """A with-block context: the container's rootfs opened for `cp` and the archive API (runtime/copy.py;
        a stopped container's is mounted for the block). `name` is how the user named it, for messages."""
        from pydock.runtime.copy import opened  # lazy: the archive package, only for cp

        c = self._current(c)
        return opened(self.driver, c, name or c.name.lstrip("/") or c.short_id,
                      on_event=lambda action: self._event(c, action))

    def exec_attached(self, c: Container | str, cfg: ExecConfig, hello: Hello,
                      winsize: tuple[int, int] | None = None) -> tuple[str, AttachSession]:
        """`exec -it`: the exec under a monitor process of its own (execs.py), with a session joined before it
        runs; the caller may detach and the exec runs on. (exec id, session)"""
        from pydock.runtime import execs  # lazy: exec machinery, only for exec

        c = self._current(c)
        rec = execs.create(self, c, cfg)
        session = execs.run(self, c, rec, hello=hello, winsize=winsize, monitor=True)
        assert session is not None
        return rec.id, session

    def exec_exit_code(self, exec_id: str) -> int | None:
        """The exit code an exec instance recorded (None while it runs, or when its monitor died)."""
        from pydock.runtime import execs  # lazy: exec machinery, only for exec

        return execs.inspect(execs.find(self.layout, exec_id)[1])["ExitCode"]

    @property
    def user_networks(self) -> Any:
        """User-defined networks (`links/networks.py`), beside the default bridge."""
        from pydock.links.networks import Networks  # lazy: pyroute2 is heavy; only user networks need it

        return Networks(self.layout, self.bridge if self.networking else None)
