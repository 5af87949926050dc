"""The Runtime: glue between storage, images, names, network and the lxc launcher (Docker 0.7's runtime.go).

    with Runtime(tmpdir, bridge="none") as rt:
        c = rt.create("busybox", ["echo", "hi"])
        rt.start(c)
        rt.wait(c)

Several processes may use one root at once: container files are written atomically under a
per-container lock, names live in SQLite, and a running container is supervised by exactly one
process (a detached monitor, or the foreground `run`) that holds `containers/<id>/monitor.lock`.
Whoever finds a container marked running without a live monitor repairs it (see reconcile.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from pydock.runtime import reconcile as _rec
from pydock.runtime.container import Container
from pydock.utils.fileutil import atomic_write, flocked
from pydock.utils.errors import Conflict, InvalidArgument, NotFound, PydockError
from pydock.utils.ids import generate_id, is_valid_id, resolve_prefix
from pydock.runtime.launcher import signal_container
from pydock.runtime.options import merge_env, parse_env, parse_memory, parse_volume, split_hostname
from pydock.utils.paths import RootLayout
from pydock.runtime.rootpath import container_path

DEFAULT_STOP_TIMEOUT = 10
#: init-layer stubs: mount points lxc and pydock bind onto (Docker 0.7's setupInitLayer).
INIT_DIRS = ("dev/pts", "dev/shm", "proc", "sys", "etc")
INIT_FILES = (".dockerinit", ".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname")
HOSTS_TAIL = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
              "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


class RunResult(NamedTuple):
    """What a one-shot `Runtime.run` gives back (stdout/stderr are empty when streamed to sinks)."""

    exit_code: int
    stdout: bytes
    stderr: bytes


class Runtime:
    """One pydock root: containers, images (on one DeviceSet), names, network."""

    def __init__(self, root: str | os.PathLike, driver: str | None = None, *, prefix: str | None = None,
                 deviceset: Any = None, bridge: str = "pydock0", icc: bool = True,
                 bip: str | None = None, storage_options: dict | None = None) -> None:
        self.layout = RootLayout(Path(root).absolute())
        self.layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.layout.containers.mkdir(mode=0o700, exist_ok=True)
        if deviceset is None:
            from pydock.devmapper.drivers import open_deviceset

            options = dict(storage_options or {})
            if prefix:
                options["prefix"] = prefix
            deviceset, reason = open_deviceset(self.layout.root, driver, **options)
            self._owns_driver = True
        else:
            reason = f"{deviceset.name}: given by the caller"
            self._owns_driver = False
        self.driver = deviceset
        self.driver_reason = reason
        self.bridge = bridge
        self.icc = icc
        self.bip = bip
        self._images: Any = None
        self._names: Any = None
        self._network: Any = None
        self._closed = False

    # ---- owned services (opened lazily: `pydock run` must not pay for what it does not use) ----
    @property
    def images(self) -> Any:
        """The ImageStore (graph + tags); `images.resolve("busybox")` builds busybox when missing."""
        if self._images is None:
            from pydock.graph.lookup import ImageStore

            self._images = ImageStore(self.layout, self.driver, in_use=self._image_user)
        return self._images

    @property
    def graph(self) -> Any:
        return self.images.graph

    @property
    def names(self) -> Any:
        """The SQLite name/link graph (`<root>/linkgraph.db`)."""
        if self._names is None:
            from pydock.links.graphdb import GraphDB

            self._names = GraphDB(self.layout.linkgraph)
        return self._names

    @property
    def network(self) -> Any:
        if self._network is None:
            from pydock.links.network import NetworkManager

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
        if self._names is not None:
            self._names.close()
        if self._owns_driver:
            closer = getattr(self.driver, "close", None)
            if closer is not None:
                closer()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- lookup ---------------------------------------------------------------------------
    def _ids(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.layout.containers) if is_valid_id(n)]
        except FileNotFoundError:
            return []

    def _load(self, container_id: str) -> Container:
        return Container.load(self.layout.container(container_id))

    def get(self, name_or_id: str) -> Container:
        """By name first (`web` or `/web`, also `/parent/alias`), then by id or unique id prefix."""
        if not name_or_id:
            raise NotFound("No such container: ")
        path = name_or_id if name_or_id.startswith("/") else "/" + name_or_id
        try:
            entity = self.names.get(path)
        except PydockError:
            entity = None
        if entity and (self.layout.container(entity) / "config.json").exists():
            c = self._refresh(self._load(entity))
            if c.dir.exists():
                return c
        cid = resolve_prefix(name_or_id, self._ids(), "container")
        try:
            c = self._refresh(self._load(cid))
        except NotFound:
            raise NotFound(f"No such container: {name_or_id}") from None
        if not c.dir.exists():
            raise NotFound(f"No such container: {name_or_id}")
        return c

    def containers(self, all: bool = False) -> list[Container]:
        """Containers, newest first (only running ones unless `all`); dead monitors are repaired on the way."""
        out = []
        for cid in self._ids():
            try:
                c = self._refresh(self._load(cid))
            except (NotFound, KeyError):
                _rec.sweep_incomplete(self, cid)  # being created/removed now, or left half-made by a crash
                continue
            if not c.dir.exists():
                continue  # a --rm container whose dead monitor was just repaired: removed
            if all or c.state.running:
                out.append(c)
        out.sort(key=lambda c: c.created, reverse=True)
        return out

    def names_of(self, c: Container) -> list[str]:
        """Every name path pointing at the container (`/web`, `/app/db`)."""
        try:
            return sorted(self.names.ref_paths(c.id), key=lambda p: (p.count("/"), p))
        except PydockError:
            return [c.name] if c.name else []

    def _refresh(self, c: Container) -> Container:
        """If `c` claims to run but its monitor is gone, repair it now (or mark it Ghost if busy)."""
        if c.state.running and not _rec.monitor_alive(c):
            _rec.recover(self, c)
        return c

    def _image_user(self, image_id: str) -> str | None:
        """The id of a container whose image is `image_id` (blocks rmi)."""
        for cid in self._ids():
            try:
                if self._load(cid).image == image_id:
                    return cid
            except (NotFound, KeyError):
                continue
        return None

    # ---- create -------------------------------------------------------------------------
    def create(self, image: str, cmd: Sequence[str] | None = None, *, name: str | None = None,
               env: Sequence[str] = (), workdir: str | None = None, user: str | None = None,
               hostname: str | None = None, volumes: Sequence[str] = (), memory: int | str | None = None,
               cpu_shares: int | None = None, entrypoint: str | Sequence[str] | None = None,
               links: Sequence[str] = (), ports: Sequence[str] = (), publish_all: bool = False,
               expose: Sequence[str] = (), network: bool = True, auto_remove: bool = False,
               tty: bool = False, stdin_open: bool = False, cidfile: str | None = None,
               dns: Sequence[str] = ()) -> Container:
        """Make a container from an image: its init layer and device, name, files; not started."""
        memory_bytes = parse_memory(memory)
        if cpu_shares is not None and cpu_shares < 0:
            raise InvalidArgument("CPU shares must be a positive number")
        if workdir:
            workdir = container_path(workdir, "working directory")
        host, domain = split_hostname(hostname)
        vols = [parse_volume(v) for v in volumes]
        user_env = parse_env(list(env))
        if cidfile and os.path.exists(cidfile):
            raise Conflict(f"Container ID file found, make sure the other container isn't running or delete {cidfile}")
        img = self.images.resolve(image)
        check_depth = getattr(self.graph, "check_depth", None)
        if check_depth is not None:
            check_depth(img)
        img_cfg = dict(img.config or {})
        ep, command = _merge_command(img_cfg, entrypoint, cmd)
        if not ep + command:
            raise InvalidArgument("No command specified")
        exposed: dict[str, dict] = dict(img_cfg.get("ExposedPorts") or {})
        if expose or ports:
            from pydock.links.ports import parse_port, parse_publish

            for spec in expose:
                exposed[str(parse_port(spec))] = {}
            for spec in ports:
                exposed[str(parse_publish(spec).port)] = {}
        cid = generate_id()
        cdir = self.layout.container(cid)
        cdir.mkdir(mode=0o700)
        config = {
            "Hostname": host or cid[:12], "Domainname": domain, "User": user if user is not None else
            img_cfg.get("User", ""), "Memory": memory_bytes or 0, "MemorySwap": 0, "CpuShares": cpu_shares or 0,
            "AttachStdin": stdin_open, "AttachStdout": True, "AttachStderr": True, "PortSpecs": None,
            "ExposedPorts": exposed or None, "Tty": tty, "OpenStdin": stdin_open, "StdinOnce": stdin_open,
            "Env": merge_env(list(img_cfg.get("Env") or []), user_env), "Cmd": command, "Dns": list(dns) or None,
            "Image": image, "Volumes": {v.target: {} for v in vols} or None, "VolumesFrom": "",
            "WorkingDir": workdir if workdir is not None else img_cfg.get("WorkingDir", ""),
            "Entrypoint": ep or None, "NetworkDisabled": not network,
        }
        hostconfig = {"Binds": [v_spec for v_spec in volumes if ":" in v_spec] or None,
                      "ContainerIDFile": cidfile or "", "LxcConf": None, "Privileged": False,
                      "PortBindings": {}, "PortSpecs": list(ports), "Links": list(links) or None,
                      "PublishAllPorts": publish_all, "AutoRemove": auto_remove}
        argv = ep + command
        c = Container(id=cid, dir=cdir, image=img.id, path=argv[0], args=argv[1:], config=config,
                      hostconfig=hostconfig, driver=self.driver.name)
        made: list[str] = []
        try:
            from pydock.links.linking import assign_name, register_links

            c.name = assign_name(self.names, cid, name)
            made.append("name")
            self._make_devices(c, img.id, made)
            volumes_map, rw_map = self._make_volumes(c, vols)
            c.volumes, c.volumes_rw = volumes_map, rw_map
            if links:
                register_links(self.names, c.name, cid, links, resolve=lambda n: self.get(n).id,
                               is_running=lambda i: self._load(i).state.running)
            atomic_write(c.hostname_path, (config["Hostname"] + "\n").encode(), 0o644, durable=False)
            atomic_write(c.resolv_conf_path, _resolv_conf(list(dns)).encode(), 0o644, durable=False)
            c.save()
            if cidfile:
                with open(cidfile, "x") as f:
                    f.write(cid)
        except BaseException:
            self._destroy(c, made)
            raise
        return c

    def _make_devices(self, c: Container, image_id: str, made: list[str]) -> None:
        """`<id>-init` (stubs for mount points) on the image, then `<id>` on the init layer."""
        from pydock.devmapper.deviceset import mounted

        self.driver.add_device(c.init_id, image_id)
        made.append("init")
        mnt = c.dir / ".init-mnt"
        with mounted(self.driver, c.init_id, mnt) as root:
            _write_init_layer(root)
        mnt.rmdir()
        self.driver.set_initialized(c.init_id)
        self.driver.add_device(c.id, c.init_id)
        made.append("device")

    def _make_volumes(self, c: Container, vols: list) -> tuple[dict[str, str], dict[str, bool]]:
        paths: dict[str, str] = {}
        rw: dict[str, bool] = {}
        for v in vols:
            if v.source is None:
                source = self.layout.root / "volumes" / generate_id()
                source.mkdir(parents=True, mode=0o755)
            else:
                source = Path(v.source)
                source.mkdir(parents=True, exist_ok=True)
            paths[v.target] = str(source)
            rw[v.target] = not v.readonly
        return paths, rw

    def _destroy(self, c: Container, made: Sequence[str] = ("name", "init", "device")) -> None:
        """Undo a create: devices, names, directory (each step best effort so a half-made container goes)."""
        from pydock.runtime.reconcile import unmount_leftovers

        unmount_leftovers(self, c)
        for hash_ in (c.id, c.init_id):
            try:
                if self.driver.has_device(hash_):
                    self.driver.remove_device(hash_)
            except PydockError:
                pass
        try:
            self.names.purge(c.id)
        except PydockError:
            pass
        shutil.rmtree(c.dir, ignore_errors=True)
        shutil.rmtree(self.layout.lxc / c.id, ignore_errors=True)

    # ---- start / run ----------------------------------------------------------------------
    def start(self, c: Container) -> None:
        """Start `c` under a detached monitor process that outlives the caller; returns once launched."""
        from pydock.runtime import supervise

        c = self._current(c)
        supervise.start_detached(self, c)
        c.reload()

    def run(self, image: str, cmd: Sequence[str] | None = None, *, remove: bool = False,
            stdin: Any = None, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
            proxy_signals: bool = False, on_create: Any = None, **create_options: Any) -> RunResult:
        """Create and run a container in this process (it is its own monitor); collect or stream its output."""
        from pydock.runtime import supervise

        c = self.create(image, cmd, auto_remove=remove, **create_options)
        if on_create is not None:
            on_create(c)
        try:
            code, out, err = supervise.run_foreground(self, c, stdin=stdin, stdout=stdout, stderr=stderr,
                                                      proxy_signals=proxy_signals)
        finally:
            if remove:
                try:
                    self.remove(self._load(c.id), force=True, volumes=True)
                except NotFound:
                    pass
        return RunResult(code, out, err)

    def _current(self, c: Container | str) -> Container:
        if isinstance(c, str):
            return self.get(c)
        return self._refresh(c.reload())

    # ---- wait / stop / kill -----------------------------------------------------------------
    def wait(self, c: Container | str, timeout: float | None = None) -> int:
        """Block until `c` is not running; its exit code. TimeoutError if `timeout` passes first."""
        c = self._current(c)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            c.reload()
            if not c.state.running:
                return c.state.exit_code
            if not _rec.monitor_alive(c):
                _rec.recover(self, c)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"container {c.short_id} still running after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def kill(self, c: Container | str, sig: int | str = signal.SIGKILL) -> None:
        """Send `sig` to the container's command; SIGKILL is recorded as exit 137 whatever lxc reports."""
        c = self._current(c)
        signum = parse_signal(sig)
        if not c.state.running:
            raise Conflict(f"Container {c.short_id} is not running")
        if signum == signal.SIGKILL:
            c.killed_marker.touch()
        if not signal_container(c.state.pid, c.state.pid_start, signum):
            c.reload()
            if c.state.running and c.state.pid == 0:
                raise Conflict(f"Container {c.short_id} is still starting; try again")

    def stop(self, c: Container | str, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds (Docker's stop)."""
        c = self._current(c)
        if not c.state.running:
            return
        try:
            self.kill(c, signal.SIGTERM)
        except Conflict:
            pass  # still starting: the kill below retries until the command exists
        try:
            self.wait(c, timeout=timeout)
            return
        except TimeoutError:
            pass
        self._kill_and_wait(c)

    def _kill_and_wait(self, c: Container, timeout: float = 30) -> None:
        """SIGKILL until the container is down (retrying while it is still starting); Conflict if it won't die."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.kill(c, signal.SIGKILL)
            except Conflict:
                pass
            try:
                self.wait(c, timeout=0.5)
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise Conflict(f"Container {c.short_id} did not stop after SIGKILL") from None

    def restart(self, c: Container | str, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
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
        with flocked(c.monitor_lock_path):
            c.reload()
            if c.state.running:
                raise Conflict(f"Container {c.short_id} was started again while being removed")
            if self.uses_network(c):
                try:
                    self.network.release(c.id)
                except PydockError:
                    pass
            self._destroy(c)
        if volumes:
            vol_root = self.layout.root / "volumes"
            for path in c.volumes.values():
                p = Path(path)
                if p.parent == vol_root:
                    shutil.rmtree(p, ignore_errors=True)

    def remove_link(self, path: str) -> None:
        """`rm --link /parent/alias`: drop that name (and its iptables holes when networking)."""
        from pydock.links.linking import remove_link

        link = remove_link(self.names, path)
        if self.networking:
            try:
                parent = self._load(link.parent_id)
                child = self._load(link.child_id)
                if parent.network and child.network:
                    self.network.disable_link(parent.network["IPAddress"], child.network["IPAddress"],
                                              child.config.get("ExposedPorts") or {})
            except (NotFound, PydockError):
                pass

    def reconcile(self) -> list[str]:
        """Repair every container left running by a dead monitor, release leaked addresses, purge
        names of containers that no longer exist; the ids repaired."""
        return _rec.reconcile_all(self)

    # ---- inspection -------------------------------------------------------------------------
    def logs(self, c: Container | str, follow: bool = False) -> Iterator[Any]:
        """The container's log records (`stream`, `log`, `time`); with `follow`, until it stops."""
        from pydock.runtime.monitor import read_log

        c = self._current(c)
        if not follow:
            yield from read_log(c.log_path)
            return
        from pydock.runtime.supervise import follow_log

        yield from follow_log(self, c)

    def inspect(self, c: Container | str) -> dict[str, Any]:
        c = self._current(c)
        data = c.to_json()
        data["HostConfig"] = c.hostconfig
        return data

    def diff(self, c: Container | str) -> list[Any]:
        """Changes of the container's filesystem against its init layer (`A|C|D /path`)."""
        from pydock.runtime.layers import diff

        return diff(self.driver, self._current(c))

    def size(self, c: Container | str) -> tuple[int, int]:
        """(bytes changed in the container, that plus its image's virtual size) for `ps -s`."""
        from pydock.runtime.layers import changed_bytes

        c = self._current(c)
        rw = changed_bytes(self.driver, c)
        try:
            virtual = self.graph.virtual_size(self.graph.get(c.image))
        except PydockError:
            virtual = 0
        return rw, rw + virtual

    def uses_network(self, c: Container) -> bool:
        """Whether `c` gets (and so must give back) an address on the bridge."""
        return self.networking and not c.config.get("NetworkDisabled")

    def commit(self, c: Container | str, repo: str | None = None, tag: str | None = None, *,
               comment: str = "", author: str = "", config: dict[str, Any] | None = None) -> Any:
        """A new image from the container's changes on its image (whiteouts for deletions)."""
        import tempfile

        from pydock.runtime.layers import export_changes_to

        c = self._current(c)
        merged = dict(c.config)
        if config:
            merged.update(config)
        with tempfile.TemporaryFile(dir=self.layout.root) as buf:
            export_changes_to(self.driver, c, buf)
            buf.seek(0)
            return self.images.create(buf, parent=c.image, repo=repo, tag=tag, comment=comment, author=author,
                                      config=merged, container=c.id, container_config=c.config)

    def export(self, c: Container | str, out: BinaryIO) -> None:
        """The container's whole filesystem as a tar stream."""
        from pydock.runtime.layers import export_tree

        export_tree(self.driver, self._current(c), out)

    def top(self, c: Container | str) -> tuple[list[str], list[list[str]]]:
        """`ps -f` columns and rows for the container's processes (host pids)."""
        from pydock.runtime.launcher import container_processes

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


def parse_signal(sig: int | str) -> int:
    """`KILL`, `SIGKILL`, `9` or 9 -> 9; unknown names raise InvalidArgument."""
    if isinstance(sig, int):
        return int(sig)
    text = sig.strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise InvalidArgument(f"Invalid signal: {sig}") from None


def _merge_command(img_cfg: dict[str, Any], entrypoint: str | Sequence[str] | None,
                   cmd: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(Entrypoint, Cmd) from the user's and the image's. The user's replace the image's; an explicit
    entrypoint without a command drops the image's Cmd (it was written for the image's entrypoint)."""
    if entrypoint is None:
        ep = list(img_cfg.get("Entrypoint") or [])
    elif isinstance(entrypoint, str):
        ep = [entrypoint] if entrypoint else []
    else:
        ep = list(entrypoint)
    if cmd:
        return ep, list(cmd)
    if entrypoint is not None and ep:
        return ep, []
    return ep, list(img_cfg.get("Cmd") or [])


def _write_init_layer(root: Path) -> None:
    for d in INIT_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in INIT_FILES:
        p = root / f
        if p.is_symlink() or p.is_dir():
            continue  # never follow an image's symlink out of the layer
        if not p.exists():
            p.touch(mode=0o644)


def _resolv_conf(dns: list[str]) -> str:
    """Custom DNS, else the host's resolv.conf, else (only local nameservers) Google's, like Docker 0.7."""
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    servers = [line.split()[1] for line in text.splitlines()
               if line.startswith("nameserver") and len(line.split()) > 1]
    if not servers or all(s.startswith("127.") or s == "::1" for s in servers):
        return "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    return text


def hosts_file(ip: str | None, hostname: str, domain: str, extra: Sequence[str] = ()) -> str:
    """`/etc/hosts`: the container's own line first, then links, then the localhost block."""
    lines = []
    if ip:
        full = f"{hostname}.{domain} {hostname}" if domain else hostname
        lines.append(f"{ip}\t{full}\n")
    lines.extend(e + "\n" for e in extra)
    return "".join(lines) + HOSTS_TAIL

