"""The Engine API endpoints of `pydock serve`, each mapped onto `pydock.runtime.runtime.Runtime` calls.

Containers are started by the same detached monitors the CLI uses (through api_starter's helpers), so
`pydock ps -a` and `docker ps -a` see one set of containers. Exits are noticed the instant the
monitor releases `monitor.lock` (a blocking shared flock), so `docker run` pays no polling delay.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydock.runtime.api import models
from pydock.runtime.api.httpd import Handler, Request, bool_value
from pydock.runtime.container import Container
from pydock.utils.errors import Conflict, InvalidArgument, LaunchError, NotFound, PydockError
from pydock.runtime.state import utcnow

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"
STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2}
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
#: how long an auto-remove waits for attached clients to receive the container's last output.
ATTACH_DRAIN_TIMEOUT = 10.0
#: a pooled Runtime is replaced after this long (its in-memory bookkeeping never grows stale).
RUNTIME_MAX_AGE = 60.0


def status_for(err: BaseException) -> int:
    """HTTP status of a pydock error: 404 missing, 409 conflict, 400 bad input, 500 otherwise."""
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, Conflict):
        return 409
    if isinstance(err, InvalidArgument):
        return 400
    if isinstance(err, LaunchError) and err.exit_code in (126, 127):
        return 400
    return 500


class RuntimePool:
    """Runtimes for request threads: each in use by one thread at a time, reused while young.

    All of them share ONE name database connection: SQLite's POSIX locks are per process, and a
    second GraphDB opening (and closing) the file in this process would drop the first one's locks,
    letting another process delete the WAL under it ("disk I/O error").
    """

    def __init__(self, root: str, driver: str | None) -> None:
        from pydock.links.graphdb import GraphDB
        from pydock.utils.paths import RootLayout

        self.root = root
        self.driver = driver
        self.names = GraphDB(RootLayout(Path(root)).linkgraph)
        self.names.exists("/")  # connect now, before any other thread can
        self._idle: list[tuple[float, Any]] = []
        self._lock = threading.Lock()

    def _retire(self, rt: Any) -> None:
        rt._names = None  # the shared connection stays open
        rt.close()

    @contextmanager
    def runtime(self) -> Iterator[Any]:
        rt = None
        now = time.monotonic()
        with self._lock:
            while self._idle:
                born, candidate = self._idle.pop()
                if now - born < RUNTIME_MAX_AGE:
                    rt = (born, candidate)
                    break
                self._retire(candidate)
        if rt is None:
            from pydock.runtime.runtime import Runtime

            fresh = Runtime(self.root, self.driver)
            fresh._names = self.names
            rt = (now, fresh)
        try:
            yield rt[1]
        finally:
            with self._lock:
                self._idle.append(rt)

    def close(self) -> None:
        with self._lock:
            for _, rt in self._idle:
                self._retire(rt)
            self._idle.clear()
        self.names.close()


class Events:
    """Wakes waiters when this server changed a container (started, stopped, removed)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            if self.generation == seen:
                self._cond.wait(timeout)


def wait_monitor_released(c: Container) -> None:
    """Block until no process supervises `c` (the monitor's exclusive flock is gone)."""
    try:
        fd = os.open(c.monitor_lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def exit_event(c: Container) -> threading.Event:
    """An Event set once the container's current monitor has let go (its run is over)."""
    ev = threading.Event()

    def watch() -> None:
        try:
            wait_monitor_released(c)
        finally:
            ev.set()

    threading.Thread(target=watch, name=f"exit-{c.short_id}", daemon=True).start()
    return ev


def peer_gone(sock: Any, half_close_is_gone: bool) -> bool:
    """Whether the client went away (a waiter for a container that never starts must not linger forever).
    An attaching client half-closes at once, so only a full close (POLLHUP) counts for it."""
    import select

    mask = select.POLLHUP | select.POLLERR
    if half_close_is_gone:
        mask |= getattr(select, "POLLRDHUP", 0x2000)
    try:
        p = select.poll()
        p.register(sock, mask)
        return any(ev & mask for _, ev in p.poll(0))
    except (OSError, ValueError):
        return True


def _finish_hijacked(sock: Any, linger: float = 2.0) -> None:
    """End an attach: EOF to the client, then read (and drop) what it still sends - stdin bytes left
    unread would make our close a RST, and the client would lose the output's tail."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline = time.monotonic() + linger
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            if not sock.recv(65536):
                return
    except OSError:
        return


def frame(stream: str, data: bytes, tty: bool) -> bytes:
    """Docker's stream format: 8-byte header (stream id, length) + payload; raw bytes with a tty."""
    if tty:
        return data
    return struct.pack(">BxxxL", STREAM_IDS[stream], len(data)) + data


class LogTail:
    """Reads `<id>-json.log` records from an offset (complete lines only). The file is kept open once
    seen, so the last records can still be read after an auto-remove deleted it."""

    def __init__(self, path: Any, from_start: bool) -> None:
        self.path = path
        self.pos = 0
        self._partial = b""
        self._f: Any = None
        self._open()
        if self._f is not None and not from_start:
            self.pos = os.fstat(self._f.fileno()).st_size

    def _open(self) -> None:
        try:
            self._f = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            self._f = None

    def read(self) -> list[dict[str, Any]]:
        if self._f is None:
            self._open()
            if self._f is None:
                return []
        self._f.seek(self.pos)
        data = self._f.read()
        self.pos = self._f.tell()
        if not data:
            return []
        buf = self._partial + data
        *lines, self._partial = buf.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _parse_since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(f"Invalid timestamp: {text}") from None


def _record_time(rec: dict[str, Any]) -> float:
    from pydock.runtime.state import parse_time

    t = parse_time(rec.get("time"))
    return t.timestamp() if t is not None else 0.0


class Api:
    """The router: `api(request, handler)` for every request the server parses."""

    def __init__(self, root: str, driver: str | None, starter: Any, git_commit: str = "") -> None:
        self.pool = RuntimePool(root, driver)
        self.starter = starter
        self.events = Events()
        self.git_commit = git_commit
        self.exit_codes: dict[str, int] = {}
        self.remove_errors: dict[str, str] = {}
        self.attachers: dict[str, int] = {}
        self._attach_lock = threading.Lock()
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., None]]] = []
        r = self._route
        r("GET", r"/_ping", self.ping)
        r("HEAD", r"/_ping", self.ping)
        r("GET", r"/version", self.version)
        r("GET", r"/info", self.info)
        r("POST", r"/containers/create", self.create)
        r("GET", r"/containers/json", self.list_containers)
        r("GET", r"/containers/(?P<name>[^/]+)/json", self.inspect_container)
        r("POST", r"/containers/(?P<name>[^/]+)/start", self.start)
        r("POST", r"/containers/(?P<name>[^/]+)/attach", self.attach)
        r("POST", r"/containers/(?P<name>[^/]+)/wait", self.wait)
        r("GET", r"/containers/(?P<name>[^/]+)/logs", self.logs)
        r("POST", r"/containers/(?P<name>[^/]+)/stop", self.stop)
        r("POST", r"/containers/(?P<name>[^/]+)/kill", self.kill)
        r("POST", r"/containers/(?P<name>[^/]+)/restart", self.restart)
        r("POST", r"/containers/(?P<name>[^/]+)/resize", self.resize)
        r("GET", r"/containers/(?P<name>[^/]+)/changes", self.changes)
        r("GET", r"/containers/(?P<name>[^/]+)/top", self.top)
        r("GET", r"/containers/(?P<name>[^/]+)/export", self.export)
        r("DELETE", r"/containers/(?P<name>.+)", self.delete_container)
        r("POST", r"/commit", self.commit)
        r("GET", r"/images/json", self.list_images)
        r("POST", r"/images/create", self.create_image)
        r("GET", r"/images/(?P<name>.+)/json", self.inspect_image)
        r("GET", r"/images/(?P<name>.+)/history", self.image_history)
        r("POST", r"/images/(?P<name>.+)/tag", self.tag_image)
        r("DELETE", r"/images/(?P<name>.+)", self.delete_image)

    def _route(self, method: str, pattern: str, fn: Callable[..., None]) -> None:
        self.routes.append((method, re.compile(f"^{pattern}/?$"), fn))

    def __call__(self, req: Request, h: Handler) -> None:
        for method, pattern, fn in self.routes:
            if method != req.method:
                continue
            m = pattern.match(req.path)
            if m:
                break
        else:
            h.send_error_message(404, "page not found")
            return
        try:
            fn(req, h, **m.groupdict())
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except PydockError as err:
            self._fail(h, status_for(err), str(err))
        except TimeoutError as err:
            self._fail(h, 500, str(err) or "timed out")
        except Exception as err:  # noqa: BLE001 - a server answers every request
            self._fail(h, 500, f"{type(err).__name__}: {err}")

    @staticmethod
    def _fail(h: Handler, status: int, message: str) -> None:
        if h.responded:
            h.close_connection = True  # mid-stream: the client sees the stream end
            return
        h.send_error_message(status, message)

    # ---- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _get(rt: Any, name: str) -> Container:
        try:
            return rt.get(name)
        except NotFound:
            raise NotFound(f"No such container: {name}") from None

    @staticmethod
    def _image(rt: Any, ref: str) -> Any:
        bare = ref[len("sha256:"):] if ref.startswith("sha256:") else models.strip_registry(ref)
        try:
            return rt.images.get(bare)
        except NotFound:
            raise NotFound(f"No such image: {ref}") from None

    def _fresh(self, cid: str) -> Container | None:
        """The container's current record (dead monitors repaired), or None once it is removed."""
        with self.pool.runtime() as rt:
            try:
                c = Container.load(rt.layout.container(cid))
            except NotFound:
                return None
            return rt._refresh(c)

    def _image_name(self, rt: Any, c: Container) -> str:
        name = c.config.get("Image")
        if name:
            return str(name)
        try:
            return rt.images.name_of(c.image)
        except PydockError:
            return c.image[:12]

    def _until_released(self, c: Container) -> None:
        """Wait for the run of `c` to end; repair it if its monitor died without recording the exit."""
        wait_monitor_released(c)
        fresh = self._fresh(c.id)
        if fresh is not None and fresh.state.running:
            time.sleep(0.01)  # a ghost under repair elsewhere, or a start racing us: look again

    def wait_for(self, cid: str, condition: str, gone: Callable[[], bool] | None = None) -> tuple[int, str | None]:
        """Block until the condition holds for the container: (exit code, error). The code is the last
        one seen if the container is removed meanwhile; the error says why an auto-remove failed."""
        initial: tuple[bool, Any] | None = None
        last_code = self.exit_codes.get(cid, 0)
        while True:
            seen = self.events.generation
            c = self._fresh(cid)
            if c is None:
                return self.exit_codes.get(cid, last_code), None
            st = c.state
            last_code = st.exit_code
            if initial is None:
                initial = (st.running, st.started_at)
            if not st.running:
                if condition == "not-running":
                    return st.exit_code, None
                if condition == "next-exit" and (initial[0] or st.started_at != initial[1]):
                    return st.exit_code, None
                if condition == "removed" and cid in self.remove_errors:
                    return st.exit_code, self.remove_errors.pop(cid)
                if gone is not None and gone():
                    raise BrokenPipeError("the client went away")
                self.events.wait(seen, 0.1)
                continue
            self._until_released(c)

    def _attached(self, cid: str, delta: int) -> None:
        """Count the attach streams of a container (an auto-remove waits until they have the output)."""
        with self._attach_lock:
            n = self.attachers.get(cid, 0) + delta
            if n > 0:
                self.attachers[cid] = n
            else:
                self.attachers.pop(cid, None)
        if delta < 0:
            self.events.notify()

    def _watch_auto_remove(self, cid: str) -> None:
        """Remove an AutoRemove container once its run ends (the server's half of `docker run --rm`)."""

        def watch() -> None:
            try:
                c = self._fresh(cid)
                while c is not None and c.state.running:
                    self._until_released(c)
                    c = self._fresh(cid)
                if c is None:
                    return
                if len(self.exit_codes) > 1000:  # waiters read these at once; keep the newest only
                    for old in list(self.exit_codes)[:500]:
                        self.exit_codes.pop(old, None)
                self.exit_codes[cid] = c.state.exit_code
                deadline = time.monotonic() + ATTACH_DRAIN_TIMEOUT
                while self.attachers.get(cid) and time.monotonic() < deadline:
                    seen = self.events.generation
                    if self.attachers.get(cid):
                        self.events.wait(seen, 0.05)
                with self.pool.runtime() as rt:
                    try:
                        rt.remove(c, force=True, volumes=True)
                    except NotFound:
                        pass
            except Exception as err:  # noqa: BLE001 - the waiter must hear about it, not hang
                self.remove_errors[cid] = f"failed to remove container {cid[:12]}: {err}"
            finally:
                self.events.notify()

        threading.Thread(target=watch, name=f"autorm-{cid[:12]}", daemon=True).start()

    def sweep_auto_remove(self) -> None:
        """At start-up: remove AutoRemove containers that exited while no server was watching."""
        with self.pool.runtime() as rt:
            for c in rt.containers(all=True):
                finished = c.state.finished_at
                # old enough that no `pydock run --rm` is about to remove it itself
                if c.auto_remove and not c.state.running and finished is not None and \
                        (utcnow() - finished).total_seconds() > 5:
                    try:
                        rt.remove(c, force=True, volumes=True)
                    except PydockError:
                        pass

    # ---- system ---------------------------------------------------------------------------------
    def ping(self, req: Request, h: Handler) -> None:
        extra = b"Cache-Control: no-cache, no-store, must-revalidate\r\nPragma: no-cache\r\n"
        if req.method == "HEAD":
            h.responded = True
            h.wfile.write(h._head(200, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")])
                          .replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n", 1))
            return
        h.send_bytes(200, b"OK", "text/plain; charset=utf-8")

    def version(self, req: Request, h: Handler) -> None:
        h.send_json(200, models.version_info(self.git_commit))

    def info(self, req: Request, h: Handler) -> None:
        with self.pool.runtime() as rt:
            containers = rt.containers(all=True)
            images = len(rt.images.graph.list())
            h.send_json(200, models.system_info(containers=containers, images=images, driver=rt.driver.name,
                                                driver_status=list(rt.driver.status()), root=str(rt.layout.root)))

    # ---- containers -----------------------------------------------------------------------------
    def create(self, req: Request, h: Handler) -> None:
        body = req.json()
        if not isinstance(body, dict):
            raise InvalidArgument("Config cannot be empty in order to create a container")
        name = req.arg("name") or None
        if name:
            name = name.lstrip("/")
        kwargs = create_options(body)
        image = models.strip_registry(str(body.get("Image") or ""))
        if not image:
            raise InvalidArgument("No image was specified (Config.Image is empty)")
        with self.pool.runtime() as rt:
            try:
                rt.images.resolve(image)
            except NotFound:
                shown = image if ":" in image.rsplit("/", 1)[-1] or re.fullmatch(r"[0-9a-f]{12,64}", image) \
                    else image + ":latest"
                raise NotFound(f"No such image: {shown}") from None
            if name:
                holder = rt.names.get("/" + name)
                if holder:
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{holder}". You have to remove (or rename) that container to be able to '
                                   "reuse that name.")
            c = rt.create(image, name=name, **kwargs)
        h.send_json(201, {"Id": c.id, "Warnings": []})

    def list_containers(self, req: Request, h: Handler) -> None:
        all_ = req.flag("all")
        limit = req.int_arg("limit", -1) or -1
        size = req.flag("size")
        filters = _filters(req.arg("filters"))
        with self.pool.runtime() as rt:
            containers = rt.containers(all=all_ or limit > 0)
            out = []
            for c in containers:
                names = rt.names_of(c)
                if not _container_matches(c, names, filters):
                    continue
                sz = None
                if size:
                    try:
                        sz = rt.size(c)
                    except PydockError:
                        sz = (0, 0)
                out.append(models.container_summary(c, names, self._image_name(rt, c), sz))
                if 0 < limit <= len(out):
                    break
        h.send_json(200, out)

    def inspect_container(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
            data = models.container_inspect(c, self._image_name(rt, c))
            if req.flag("size"):
                try:
                    data["SizeRw"], data["SizeRootFs"] = rt.size(c)
                except PydockError:
                    pass
        h.send_json(200, data)

    def start(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
        if c.state.running:
            h.send_empty(304)
            return
        try:
            self.starter.start(c.id)
        except PydockError:
            if c.auto_remove:
                self._watch_auto_remove(c.id)
            self.events.notify()
            raise
        self.events.notify()
        if c.auto_remove:
            self._watch_auto_remove(c.id)
        h.send_empty(204)

    def attach(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
        tty = bool(c.config.get("Tty"))
        want = {"stdout": req.flag("stdout"), "stderr": req.flag("stderr")}
        if not (want["stdout"] or want["stderr"] or req.flag("stdin")):
            raise InvalidArgument("at least one of stdin, stdout and stderr must be set")
        tail = LogTail(c.log_path, from_start=req.flag("logs"))
        stream = req.flag("stream")
        initial = (c.state.running, c.state.started_at)
        sock = h.hijack(RAW_STREAM if tty else MULTIPLEXED)
        self._attached(c.id, +1)
        try:
            self._pump(sock.sendall, c, tail, want, tty, follow=stream, initial=initial, timestamps=False,
                       gone=lambda: peer_gone(sock, False))
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            tail.close()
            self._attached(c.id, -1)
            _finish_hijacked(sock)

    def _pump(self, write: Callable[[bytes], None], c: Container, tail: LogTail, want: dict[str, bool],
              tty: bool, *, follow: bool, initial: tuple[bool, Any], timestamps: bool,
              since: float | None = None, until: float | None = None, first: list | None = None,
              gone: Callable[[], bool] | None = None) -> None:
        """Copy log records to `write` as frames; with `follow`, until the run current (or next, if the
        container was not running) at `initial` has ended and its output is drained."""

        def send(records: list[dict[str, Any]]) -> int:
            out = []
            for rec in records:
                stream = rec.get("stream", "stdout")
                if not want.get(stream, False):
                    continue
                if since is not None or until is not None:
                    t = _record_time(rec)
                    if since is not None and t < since or until is not None and t > until:
                        continue
                data = rec.get("log", "")
                if timestamps:
                    data = (rec.get("time") or "") + " " + data
                out.append(frame(stream, data.encode("utf-8", "surrogateescape"), tty))
            if out:
                write(b"".join(out))
            return len(out)

        if first is not None:
            send(first)
        send(tail.read())
        if not follow:
            return
        watched: threading.Event | None = None
        delay = 0.005
        while True:
            seen = self.events.generation
            fresh = self._fresh(c.id)
            if fresh is None:
                send(tail.read())
                return
            st = fresh.state
            ran = initial[0] or st.running or st.started_at != initial[1]
            if ran and not st.running:
                send(tail.read())
                return
            if send(tail.read()):
                delay = 0.005
            if st.running:
                if watched is None:
                    watched = exit_event(fresh)
                watched.wait(delay)
            else:
                if gone is not None and gone():
                    return
                self.events.wait(seen, delay)
            delay = min(delay * 2, 0.1)

    def wait(self, req: Request, h: Handler, name: str) -> None:
        condition = req.arg("condition") or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f"invalid condition: \"{condition}\"")
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
        out = h.start_stream("application/json")
        code, error = self.wait_for(c.id, condition, gone=lambda: peer_gone(h.connection, True))
        body = {"StatusCode": code, "Error": {"Message": error} if error else None}
        out.write(json.dumps(body).encode() + b"\n")
        out.close()

    def logs(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
        want = {"stdout": req.flag("stdout"), "stderr": req.flag("stderr")}
        if not (want["stdout"] or want["stderr"]):
            raise InvalidArgument("You must choose at least one stream")
        tty = bool(c.config.get("Tty"))
        tail = LogTail(c.log_path, from_start=True)
        records = tail.read()
        n = req.arg("tail") or "all"
        if n != "all":
            try:
                count = int(n)
            except ValueError:
                count = -1
            if count >= 0:
                records = [r for r in records if want.get(r.get("stream", "stdout"))]
                records = records[max(0, len(records) - count):] if count else []
        since, until = _parse_since(req.arg("since")), _parse_since(req.arg("until"))
        follow = req.flag("follow") and c.state.running
        try:
            out = h.start_stream(RAW_STREAM if tty else MULTIPLEXED)
            self._pump(out.write, c, tail, want, tty, follow=follow, initial=(c.state.running, c.state.started_at),
                       timestamps=req.flag("timestamps"), since=since, until=until, first=records)
        finally:
            tail.close()
        out.close()

    def stop(self, req: Request, h: Handler, name: str) -> None:
        timeout = req.int_arg("t", None)
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
            if not c.state.running:
                h.send_empty(304)
                return
            try:
                rt.stop(c, timeout=10 if timeout is None or timeout < 0 else timeout)
            except NotFound:
                pass  # stopped, and auto-removed before we looked again: stopped all the same
        self.events.notify()
        h.send_empty(204)

    def kill(self, req: Request, h: Handler, name: str) -> None:
        from pydock.runtime.runtime import parse_signal

        signum = parse_signal(req.arg("signal") or "KILL")
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
            if not c.state.running:
                raise Conflict(f"Container {name} is not running")
            deadline = time.monotonic() + 10
            while True:
                try:
                    rt.kill(c, signum)
                    break
                except Conflict:
                    if not c.reload().state.running:
                        raise Conflict(f"Container {name} is not running") from None
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        if signum == signal.SIGKILL:
            self.wait_for(c.id, "not-running")  # dockerd answers a SIGKILL only once the container is down
        self.events.notify()
        h.send_empty(204)

    def restart(self, req: Request, h: Handler, name: str) -> None:
        timeout = req.int_arg("t", None)
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
            rt.stop(c, timeout=10 if timeout is None or timeout < 0 else timeout)
        self.starter.start(c.id)
        self.events.notify()
        h.send_empty(204)

    def resize(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            self._get(rt, name)
        h.send_bytes(200, b"", "text/plain; charset=utf-8")

    def delete_container(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            if req.flag("link"):
                rt.remove_link("/" + name.strip("/"))
                h.send_empty(204)
                return
            c = self._get(rt, name)
            if c.state.running and not req.flag("force"):
                label = c.name or c.short_id
                raise Conflict(f'cannot remove container "{label}": container is running: stop the container '
                               "before removing or force remove")
            try:
                rt.remove(c, force=req.flag("force"), volumes=req.flag("v"))
            except NotFound:
                pass  # removed meanwhile (its auto-remove won the race): gone, as asked
        self.events.notify()
        h.send_empty(204)

    def changes(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
            out = []
            for change in rt.diff(c):
                kind, _, path = str(change).partition(" ")
                out.append({"Path": path, "Kind": models.CHANGE_KINDS.get(kind, 0)})
        h.send_json(200, out)

    def top(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
            titles, rows = rt.top(c)
        h.send_json(200, {"Titles": titles, "Processes": rows})

    def export(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            c = self._get(rt, name)
            out = h.start_stream("application/x-tar")
            rt.export(c, out)
        out.close()

    def commit(self, req: Request, h: Handler) -> None:
        ref = req.arg("container") or ""
        repo = models.strip_registry(req.arg("repo") or "") or None
        tag = req.arg("tag") or None
        if repo and tag is None:
            from pydock.graph.tags import split_reference

            repo, tag = split_reference(repo)
        if req.args("changes") and any(x.strip() for x in req.args("changes")):
            raise InvalidArgument("commit --change is not supported by pydock")
        config = req.json() if req.headers.get("Content-Type", "").startswith("application/json") else {}
        if not isinstance(config, dict):
            raise InvalidArgument("The commit body must be a JSON object (a container Config)")
        config = {k: v for k, v in config.items() if v not in (None, "", [], {})} if config else None
        with self.pool.runtime() as rt:
            c = self._get(rt, ref)
            image = rt.commit(c, repo, tag, comment=req.arg("comment") or "", author=req.arg("author") or "",
                              config=config)
        h.send_json(201, {"Id": models.image_ref(image.id)})

    # ---- images ---------------------------------------------------------------------------------
    def list_images(self, req: Request, h: Handler) -> None:
        from fnmatch import fnmatchcase

        all_ = req.flag("all")
        filters = _filters(req.arg("filters"))
        refs = filters.get("reference", [])
        dangling = filters.get("dangling", [])
        with self.pool.runtime() as rt:
            store = rt.images
            images = {img.id: img for img in store.graph.list()}
            by_image = store.tags.by_image()
            parents = {img.parent for img in images.values() if img.parent}
            out = []
            for img in sorted(images.values(), key=lambda i: i.created, reverse=True):
                tags = sorted(by_image.get(img.id, []))
                if refs:
                    tags = [t for t in tags if any(fnmatchcase(t, p) or fnmatchcase(t.rsplit(":", 1)[0], p)
                                                   for p in refs)]
                    if not tags:
                        continue
                if not tags and not all_ and img.id in parents:
                    continue
                if dangling and bool_value(dangling[-1]) == bool(tags):
                    continue
                out.append(models.image_summary(img, tags, store.graph.virtual_size(img)))
        h.send_json(200, out)

    def inspect_image(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            img = self._image(rt, name)
            tags = sorted(rt.images.tags.names_for(img.id))
            h.send_json(200, models.image_inspect(img, tags, rt.graph.virtual_size(img), rt.driver.name))

    def image_history(self, req: Request, h: Handler, name: str) -> None:
        with self.pool.runtime() as rt:
            img = self._image(rt, name)
            out = []
            for layer in rt.graph.history(img):
                cmd = (layer.container_config or {}).get("Cmd") or []
                out.append({"Id": models.image_ref(layer.id), "Created": int(layer.created.timestamp()),
                            "CreatedBy": " ".join(cmd) if isinstance(cmd, list) else str(cmd),
                            "Tags": rt.images.tags.names_for(layer.id) or None, "Size": layer.size,
                            "Comment": layer.comment})
        h.send_json(200, out)

    def tag_image(self, req: Request, h: Handler, name: str) -> None:
        repo = models.strip_registry(req.arg("repo") or "")
        tag = req.arg("tag") or None
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        with self.pool.runtime() as rt:
            img = self._image(rt, name)
            rt.images.tag(img.id, repo, tag, force=True)
        h.send_empty(201)

    def delete_image(self, req: Request, h: Handler, name: str) -> None:
        ref = name[len("sha256:"):] if name.startswith("sha256:") else models.strip_registry(name)
        with self.pool.runtime() as rt:
            try:
                lines = rt.images.remove(ref)
            except NotFound:
                raise NotFound(f"No such image: {name}") from None
        out = []
        for line in lines:
            key, _, value = line.partition(": ")
            out.append({"Untagged": value} if key == "Untagged" else {"Deleted": models.image_ref(value)})
        h.send_json(200, out)

    def create_image(self, req: Request, h: Handler) -> None:
        if req.arg("fromSrc") is not None:
            self._import(req, h)
        elif req.arg("fromImage"):
            self._pull(req, h)
        else:
            raise InvalidArgument("fromImage or fromSrc is required")

    def _import(self, req: Request, h: Handler) -> None:
        from pydock.graph.tags import split_reference

        src = req.arg("fromSrc") or "-"
        if src != "-":
            raise InvalidArgument(f"Importing from a URL is not supported: download {src} and import the file")
        repo = models.strip_registry(req.arg("repo") or "") or None
        tag = req.arg("tag") or None
        if repo and tag is None:
            repo, tag = split_reference(repo)
        try:
            with self.pool.runtime() as rt:
                image = rt.images.import_(req.body, repo, tag, source="-")
        except PydockError as err:
            h.close_connection = not req.body.done
            msg = str(err)
            h.send_bytes(200, json.dumps({"errorDetail": {"message": msg}, "error": msg}).encode() + b"\r\n")
            return
        h.send_bytes(200, json.dumps({"status": models.image_ref(image.id)}).encode() + b"\r\n")

    def _pull(self, req: Request, h: Handler) -> None:
        """No registry: the embedded busybox is built; an image already here is 'up to date'; else 404."""
        from pydock.graph.tags import split_reference

        name = models.strip_registry(req.arg("fromImage") or "")
        repo, tag = split_reference(name)
        tag = req.arg("tag") or tag or "latest"
        ref = f"{repo}:{tag}"
        with self.pool.runtime() as rt:
            if ref == "busybox:latest":
                rt.images.resolve(ref)
                found = True
            else:
                found = rt.images.lookup(ref) is not None
        if not found:
            raise NotFound(f"pull access denied for {repo}, repository does not exist or may require "
                           "'docker login': pydock has no registry (import the image instead)")
        h.send_bytes(200, json.dumps({"status": f"Status: Image is up to date for {ref}"}).encode() + b"\r\n")


# ---- request decoding ---------------------------------------------------------------------------

def _filters(text: str | None) -> dict[str, list[str]]:
    """`filters={"name":["web"]}` (or the old `{"name":{"web":true}}` form) -> {key: [values]}."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"Invalid filters: {text}") from None
    out: dict[str, list[str]] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, dict):
            out[key] = [k for k, v in value.items() if v]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


def _container_matches(c: Container, names: list[str], filters: dict[str, list[str]]) -> bool:
    for value in filters.get("id", []):
        if not c.id.startswith(value):
            return False
    if filters.get("name") and not any(re.search(p, n.lstrip("/")) for p in filters["name"] for n in names):
        return False
    if filters.get("status") and models.state_name(c) not in filters["status"]:
        return False
    return True


def create_options(body: dict[str, Any]) -> dict[str, Any]:
    """`Runtime.create` keyword arguments from a `POST /containers/create` body (Config + HostConfig)."""
    hc = body.get("HostConfig") or {}
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    entrypoint = body.get("Entrypoint")
    if isinstance(entrypoint, list) and entrypoint == [""]:
        entrypoint = ""
    if body.get("OpenStdin") or body.get("AttachStdin"):
        raise InvalidArgument("stdin (docker run -i) is not supported by pydock serve: containers started "
                              "through the API read /dev/null; use `pydock run -i`")
    mode = hc.get("NetworkMode") or "default"
    if mode not in ("default", "bridge", "none"):
        raise InvalidArgument(f"Network mode {mode} is not supported (use bridge or none)")
    binds = [str(b) for b in hc.get("Binds") or []]
    bound = {b.split(":")[1] for b in binds if b.count(":") >= 1}
    # the SDK lists a bind's target in Volumes too: one mount per target
    volumes = [str(v) for v in (body.get("Volumes") or {}) if str(v) not in bound] + binds
    ports = []
    for private, binds in (hc.get("PortBindings") or {}).items():
        for b in binds or [{}]:
            host_ip, host_port = (b or {}).get("HostIp") or "", (b or {}).get("HostPort") or ""
            if host_ip:
                ports.append(f"{host_ip}:{host_port}:{private}")
            elif host_port:
                ports.append(f"{host_port}:{private}")
            else:
                ports.append(str(private))
    hostname = body.get("Hostname") or None
    if hostname and body.get("Domainname"):
        hostname = f"{hostname}.{body['Domainname']}"
    memory = hc.get("Memory") or body.get("Memory") or None
    cpu = hc.get("CpuShares") or body.get("CpuShares") or None
    return {
        "cmd": list(cmd) if cmd else None,
        "env": tuple(str(e) for e in body.get("Env") or ()),
        "workdir": body.get("WorkingDir") or None,
        "user": body.get("User") or None,
        "hostname": hostname,
        "volumes": tuple(volumes),
        "memory": int(memory) if memory else None,
        "cpu_shares": int(cpu) if cpu else None,
        "entrypoint": entrypoint,
        "links": tuple(str(x) for x in hc.get("Links") or ()),
        "ports": tuple(ports),
        "publish_all": bool(hc.get("PublishAllPorts")),
        "expose": tuple(str(p) for p in (body.get("ExposedPorts") or {})),
        "network": mode != "none" and not body.get("NetworkDisabled"),
        "auto_remove": bool(hc.get("AutoRemove")),
        "tty": bool(body.get("Tty")),
        "stdin_open": bool(body.get("OpenStdin")),
        "dns": tuple(str(d) for d in hc.get("Dns") or ()),
    }
