"""Starting a container and seeing it through to its exit: prepare (rootfs, network, user, command,
config.lxc), launch lxc-start, pump output, then `finish`: record the exit, clean up and, for a
`--rm` container, remove it. The supervisor is the foreground `run` process or a detached monitor
forked for `start`/`run -d`; it holds the monitor lock (monitorlock.py) from before the launch
until `finish` is done.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pydock.runtime import attach, caps, cgroups, confinement, ctty, events, lxcconf, monitorlock, netattach, notify, \
    removal, restart
from pydock.runtime.container import Container
from pydock.runtime.etcfiles import check_extra_host, hosts_file
from pydock.runtime.jsonlog import open_writer
from pydock.runtime.launcher import HELPER_ENV, LaunchSpec, exit_status, lxc_noise_prefix, signal_container, spawn, \
    wait_for_command
from pydock.runtime.monitor import LxcNoiseFilter, RawTerminal, SignalProxy, copy_winsize, detach_stdio, set_winsize
from pydock.runtime.options import DEFAULT_PATH, env_value, merge_env, parse_tmpfs
from pydock.runtime.relay import CommandIO, Local, Relay, spawn_with_stdin_pipe
from pydock.runtime.rootpath import ensure_dir_in_root, look_path, mount_point_in_root, prepare_binds
from pydock.utils.process import proc_start_time, self_identity
from pydock.utils.version import build_info
from pydock.runtime.userdb import add_groups, resolve_user
from pydock.utils.errors import Conflict, LaunchError, PydockError
from pydock.utils.fileutil import atomic_write

if TYPE_CHECKING:
    from pydock.links.proxy import PortProxy
    from pydock.runtime.runtime import Runtime

log = logging.getLogger(__package__)


@dataclass
class Console:
    """The pty the container sees as /dev/console: with `-t` also its terminal (stdin, stdout,
    stderr); without, what is written to it goes to the log as stdout. Host ttys never reach it.
    An fd is set to -1 once closed, so that no fd number is closed twice."""

    master: int
    slave: int
    path: Path

    @classmethod
    def open(cls, raw: bool) -> Console:
        master, slave = os.openpty()
        if raw:  # no terminal: bytes pass unchanged (no \n -> \r\n, no echo)
            import tty  # lazy: small, and only here

            tty.setraw(slave)
        return cls(master, slave, Path(os.ttyname(slave)))

    def close_slave(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def close(self) -> None:
        self.close_slave()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@dataclass(frozen=True)
class Prepared:
    """A container ready to launch: its lxc-start invocation, its console and the proxy of its published
    TCP ports (bound already; relaying once the monitor starts it)."""

    spec: LaunchSpec
    console: Console
    proxy: PortProxy | None = None

    def start_proxy(self) -> None:
        """In the monitor, once the command is launched."""
        if self.proxy is not None:
            self.proxy.start()

    def stop_proxy(self) -> None:
        """In the monitor, once the command ended (or did not launch): the published ports let go
        (`finished` does it)."""
        if self.proxy is not None:
            self.proxy.stop()

    def close_proxy(self) -> None:
        """This process's copies of the listeners, where another process (the monitor) holds them too."""
        if self.proxy is not None:
            self.proxy.close()


def acquire_monitor_lock(c: Container) -> int:
    """Take `monitor.lock` for the supervisor of this run; Conflict if another run is live."""
    return monitorlock.acquire(c.monitor_lock_path, lambda: c.reload().state.running, c.short_id)


def prepare(rt: Runtime, c: Container, lock: int) -> Prepared:
    """Get the rootfs, allocate the network, resolve user/workdir/command, write config.lxc.

    Marks the container running (monitor = this process) *before* mounting, so a crash at any later
    point leaves a state reconcile can repair. On error the run is finished at once (exit status
    127/126/125 recorded, everything released, a `--rm` container removed) and the error raised.
    """
    me, me_start = self_identity()
    with c.locked():
        if c.state.running:
            raise Conflict(f"Container {c.short_id} is already running")
        c.killed_marker.unlink(missing_ok=True)
        c.save_state(c.state.started(pid=0, pid_start=0, monitor_pid=me, monitor_start=me_start))
    try:
        return _prepare(rt, c)
    except BaseException as err:
        code = err.exit_code if isinstance(err, PydockError) and err.exit_code >= 125 else 125
        finish(rt, c, code, lock)
        if isinstance(err, PydockError) and not isinstance(err, LaunchError) and err.exit_code < 125:
            raise LaunchError(str(err)) from err
        raise


def _prepare(rt: Runtime, c: Container) -> Prepared:
    cfg = c.config
    rootfs = rt.driver.get(c.id)
    settings = None
    link_env: list[str] = []
    link_hosts: list[str] = []
    joined = netattach.attach(rt, c)  # user networks: [] unless the container is on one
    extra = [s for _, s in joined]
    publisher = None
    routes = []
    if rt.uses_network(c):
        settings = rt.network.allocate(c.id, mac=cfg.get("MacAddress") or "")
        publisher = rt.network
    elif joined:  # on a user network (or connected to one with the default bridge off): eth0 is its first
        settings, extra = extra[0], extra[1:]
        publisher = rt.user_networks.manager(joined[0][0])
    if publisher is not None:
        specs = c.hostconfig.get("PortSpecs") or []
        if specs or c.hostconfig.get("PublishAllPorts"):
            exposed = list((cfg.get("ExposedPorts") or {}).keys()) if c.hostconfig.get("PublishAllPorts") else []
            mappings = publisher.publish(c.id, settings, [*specs, *exposed])
            settings = settings.with_ports(mappings) if hasattr(settings, "with_ports") else settings
            from pydock.links.proxy import Route  # lazy: published ports only

            routes = [Route(m.host_ip, m.host_port, settings.ip_address, m.port.number)
                      for m in mappings if m.port.proto == "tcp"]
        link_env, link_hosts = _links(rt, c, settings)
    net_json = None
    if settings is not None:
        net_json = {**settings.to_json(), "Networks": netattach.networks_json(joined, c.id)}
        if rt.uses_network(c):
            net_json["Networks"]["bridge"] = netattach.bridge_endpoint(rt, c.id, settings)
        c.network = net_json
    user = add_groups(rootfs, resolve_user(rootfs, cfg.get("User") or ""), c.hostconfig.get("GroupAdd") or ())
    link_hosts = [*link_hosts, *(check_extra_host(h) for h in c.hostconfig.get("ExtraHosts") or ())]
    env = merge_env(
        ["HOME=/", f"PATH={DEFAULT_PATH}", "container=lxc", f"HOSTNAME={cfg.get('Hostname') or c.short_id}"],
        ["TERM=xterm"] if cfg.get("Tty") else [], link_env, c.env())
    cwd = ensure_dir_in_root(rootfs, cfg.get("WorkingDir") or "/", user.uid, user.gid)  # canonical, no symlinks
    argv0 = look_path(rootfs, c.path, env_value(env, "PATH", DEFAULT_PATH), user.uid, (user.gid, *user.groups))
    ip = settings.ip_address if settings is not None else None
    atomic_write(c.hosts_path, hosts_file(ip, cfg.get("Hostname", ""), cfg.get("Domainname", ""),
                                          link_hosts).encode(), 0o644, durable=False)
    netattach.refresh_hosts(rt, [rec.id for rec, _ in joined])  # its members' lines, and it in theirs
    atomic_write(c.env_path, json.dumps(env).encode(), 0o644, durable=False)
    binds = [lxcconf.Bind(c.hostname_path, "/etc/hostname"), lxcconf.Bind(c.hosts_path, "/etc/hosts"),
             lxcconf.Bind(c.resolv_conf_path, "/etc/resolv.conf"), lxcconf.Bind(c.env_path, "/.dockerenv")]
    for target, source in sorted(c.volumes.items()):
        binds.append(lxcconf.Bind(Path(source), target, readonly=not c.volumes_rw.get(target, True),
                                  is_file=not Path(source).is_dir()))
    binds = list(prepare_binds(rootfs, binds))  # targets made inside the rootfs: lxc creates nothing
    tmpfs = tuple((mount_point_in_root(rootfs, target), parse_tmpfs(f"{target}:{options}")[1])
                  for target, options in sorted((c.hostconfig.get("Tmpfs") or {}).items()))
    network = _shared_network(rt, c)
    if settings is not None:
        from pydock.links.network import lxc_network_config  # lazy: networking only (pyroute2 is heavy)

        network = tuple(lxc_network_config(settings, gateway=True, extra=extra))
    privileged = bool(c.hostconfig.get("Privileged"))
    conf = confinement.parse(c.hostconfig.get("SecurityOpt"), privileged=privileged)
    held = caps.resolve(c.hostconfig.get("CapAdd") or (), c.hostconfig.get("CapDrop") or (), privileged=privileged)
    policy = confinement.lxc_policy(conf, held)
    seccomp_path = None
    if policy is not None:
        seccomp_path = c.lxc_config_path.with_name("seccomp.lxc")
        atomic_write(seccomp_path, policy.encode(), 0o600, durable=False)
    argv = (argv0, *c.args)
    init = None
    if c.hostconfig.get("Init"):
        from pydock.runtime import initbin  # lazy: --init only (hashlib, shutil: ~10 ms of every run)

        init = initbin.init_binary(rt.layout)
        argv = initbin.init_argv(argv)
    shim = ctty.ctty_binary(rt.layout)  # in every container: `exec` starts through it too
    if shim is not None:
        binds.append(lxcconf.Bind(shim, ctty.CTTY_PATH, lxc_creates=True))
        if cfg.get("Tty"):  # the pty becomes the command's controlling terminal (job control, ^C)
            argv = ctty.ctty_argv(argv)
    console = Console.open(raw=not cfg.get("Tty"))
    proxy = None
    try:
        if routes:  # bound now: a port a host program took fails the start here
            from pydock.links.proxy import PortProxy  # lazy: published ports only

            proxy = PortProxy(routes)
        spec = lxcconf.LxcSpec(hostname=cfg.get("Hostname") or c.short_id, rootfs=rootfs, network=network,
                               binds=tuple(binds), env=tuple(env), uid=user.uid, gid=user.gid,
                               groups=user.groups, cwd=cwd, memory=cfg.get("Memory") or None,
                               cpu_shares=cfg.get("CpuShares") or None, no_new_privs=conf.no_new_privileges,
                               seccomp=seccomp_path, console=console.path, init=init, caps=held,
                               tmpfs=tmpfs, read_only=bool(c.hostconfig.get("ReadonlyRootfs")),
                               ulimits=tuple((u["Name"], u["Soft"], u["Hard"])
                                             for u in c.hostconfig.get("Ulimits") or ()),
                               pids_limit=c.hostconfig.get("PidsLimit"),
                               cpuset_cpus=c.hostconfig.get("CpusetCpus") or None,
                               nano_cpus=c.hostconfig.get("NanoCpus") or None,
                               memory_swap=cfg.get("MemorySwap") or None,
                               swappiness=c.hostconfig.get("MemorySwappiness"),
                               extra=tuple((d["Key"], d["Value"]) for d in c.hostconfig.get("LxcConf") or ()),
                               devices=_devices(c, privileged), privileged=privileged)
        atomic_write(c.lxc_config_path, lxcconf.render(spec).encode(), 0o600, durable=False)
        return _launch_spec(rt, c, net_json, argv, console, proxy)
    except BaseException:
        console.close()
        if proxy is not None:
            proxy.close()
        raise


def _devices(c: Container, privileged: bool) -> tuple[tuple[Path, str, str], ...]:
    """The `--device` nodes, looked at again now (a node may have changed since create); privileged,
    every host device too."""
    out = {}
    for d in c.hostconfig.get("Devices") or ():
        dev = cgroups.parse_device(f"{d['PathOnHost']}:{d['PathInContainer']}:{d['CgroupPermissions']}")
        out[dev.container] = (Path(dev.host), dev.container, dev.rule)
    for dev in cgroups.host_devices() if privileged else ():
        out.setdefault(dev.container, (Path(dev.host), dev.container, dev.rule))
    return tuple(out.values())


def _shared_network(rt: Runtime, c: Container) -> tuple[tuple[str, str], ...]:
    """lxc's network keys for a container without a bridge address: the host's namespace (`--net host`),
    another running container's (`--net container:X`), else a namespace with only `lo`."""
    mode = c.hostconfig.get("NetworkMode") or "default"
    if mode == "host":
        return (("lxc.net.0.type", "none"),)
    if mode.startswith("container:"):
        other = rt.load(mode.partition(":")[2])
        # right after its start, the other container's network is set up once its command runs
        init = wait_for_command(other.state.pid, other.state.pid_start) if other.state.running else None
        if init is None:
            raise LaunchError(f"cannot join network of a non running container: {other.short_id}")
        return (("lxc.namespace.share.net", str(init)),)
    return lxcconf.EMPTY_NETWORK


def _launch_spec(rt: Runtime, c: Container, net_json: dict[str, Any] | None, argv: tuple[str, ...],
                 console: Console, proxy: PortProxy | None) -> Prepared:
    """Record the network in the state, locate the helper, and put the launch together."""
    if net_json is not None:
        with c.locked():
            c.network = net_json
            c.save_state(c.state)
    helper = None
    if _launch_through_helper():
        from pydock.dockerinit.locate import dockerinit_path  # lazy: packaged builds only

        helper = dockerinit_path(rt.layout)
    return Prepared(LaunchSpec(name=c.id, lxcpath=rt.layout.lxc, config=c.lxc_config_path,
                               log=c.lxc_log_path, argv=argv, helper=helper), console, proxy)


def _launch_through_helper() -> bool:
    """Packaged builds (they carry a buildinfo with the helper's sha256) launch through the located,
    identity-checked dockerinit helper, like Docker's dynbinary; a source checkout runs the same step
    in-process. PYDOCK_DOCKERINIT_EXEC=1 or 0 overrides either way."""
    choice = os.environ.get(HELPER_ENV)
    if choice in ("0", "1"):
        return choice == "1"
    info = build_info()
    return info is not None and getattr(info, "INIT_SHA256", None) is not None


def _links(rt: Runtime, c: Container, settings: Any) -> tuple[list[str], list[str]]:
    """Env vars and hosts lines of the container's links; opens the iptables holes between them."""
    from pydock.links.linkenv import hosts_entry, link_env  # lazy: networking only
    from pydock.links.linking import active_links  # lazy: networking only

    env: list[str] = []
    hosts: list[str] = []
    for link in active_links(rt.names, c.name):
        try:
            child = rt.load(link.child_id)
        except PydockError as err:
            log.debug("link %s: its container is gone (%s); skipped", link.path, err)
            continue
        if not child.state.running or not child.network:
            raise LaunchError(f"Cannot link to a non running container: {link.path}")
        child_ip = child.network["IPAddress"]
        ports = child.config.get("ExposedPorts") or {}
        env += link_env(link.alias, link.path, child_ip, ports, child.env())
        hosts.append(hosts_entry(link.alias, child_ip))
        if settings is not None:
            rt.network.enable_link(settings.ip_address, child_ip, ports)
    return env, hosts


def cleanup(rt: Runtime, c: Container) -> None:
    """After the command ended (or a launch failed): the attach socket gone, the address back, the rootfs
    put back."""
    attach.remove_socket(c.dir)
    removal.release_address(rt, c)
    try:
        rt.driver.put(c.id)
    except PydockError as err:  # e.g. a run that died before it got the rootfs
        log.debug("container %s: rootfs not put back: %s", c.short_id, err)
    c.killed_marker.unlink(missing_ok=True)


def finish(rt: Runtime, c: Container, code: int, lock: int) -> None:
    """The end of a run, by its supervisor (holding `lock`): release, record the exit (in the state and
    for waiters in the lock file), then remove a `--rm` container. Also used by crash recovery."""
    try:
        cleanup(rt, c)
    finally:
        with c.locked():
            c.save_state(c.state.stopped(code))
        events.container_event(rt.layout.root, c, "die", exitCode=code)
        monitorlock.record_exit(lock, code)
        notify.changed()
    if c.auto_remove:
        removal.auto_remove(rt, c)
        events.container_event(rt.layout.root, c, "destroy")


def launched(c: Container, proc: subprocess.Popen) -> None:
    """Record the running state with lxc-start's pid and the supervising process."""
    me, me_start = self_identity()
    with c.locked():
        state = c.state.started(pid=proc.pid, pid_start=proc_start_time(proc.pid) or 0, monitor_pid=me,
                                monitor_start=me_start)
        c.save_state(state)


def finished(rt: Runtime, c: Container, prepared: Prepared, returncode: int, lock: int) -> tuple[int, str | None]:
    """Finish the run of `prepared` (its published ports let go first) with lxc-start's status made exact
    (137 if pydock sent SIGKILL; 125 if lxc failed)."""
    prepared.stop_proxy()
    code, failure = exit_status(returncode, c.lxc_log_path, c.killed_marker.exists())
    if returncode < 0:  # lxc-start itself was killed: it could not remove its cgroups
        cgroups.remove_lxc_cgroups(c.id, settle=cgroups.EXIT_SETTLE)
    finish(rt, c, code, lock)
    return code, failure


def _launch(prepared: Prepared, c: Container, stdin: Any) -> tuple[subprocess.Popen, CommandIO]:
    """lxc-start with the command's stdio: the pty (`-t`), or pipes for stdout and stderr and, for stdin,
    the caller's `stdin`, else a pipe the supervisor holds for attach clients (`-i`), else /dev/null."""
    cfg = c.config
    console = prepared.console
    open_stdin, stdin_once = bool(cfg.get("OpenStdin")), bool(cfg.get("StdinOnce"))
    if cfg.get("Tty"):
        proc = spawn(prepared.spec, stdin=console.slave, stdout=console.slave, stderr=console.slave)
        # the container's processes hold the terminal now: its end reads EIO when they are gone
        console.close_slave()
        return proc, CommandIO(tty=True, pty=console.master, open_stdin=open_stdin, stdin_once=stdin_once)
    def start(fd: Any) -> subprocess.Popen:
        return spawn(prepared.spec, stdin=fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    if stdin is not None:  # the caller's own stdin, passed through
        proc, held = start(stdin), None
    else:
        proc, held = spawn_with_stdin_pipe(start, open_stdin)
    assert proc.stdout is not None and proc.stderr is not None
    return proc, CommandIO(tty=False, stdout=proc.stdout.fileno(), stderr=proc.stderr.fileno(),
                           console=console.master, stdin=held, open_stdin=held is not None, stdin_once=stdin_once,
                           noise=LxcNoiseFilter(lxc_noise_prefix(prepared.spec.name)))


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def run_foreground(rt: Runtime, c: Container, *, stdin: Any = None, stdout: BinaryIO | None = None,
                   stderr: BinaryIO | None = None, proxy_signals: bool = False) -> tuple[int, bytes, bytes]:
    """Run `c` with this process as its monitor: output to the log and to the sinks (or collected).

    With the container's `Tty` set, the command gets a pty (stdout and stderr merged, like Docker),
    our terminal goes raw while it runs, and `stdin` (if given) is copied into the pty. Clients may
    attach through the container's attach socket meanwhile.
    """
    lock = acquire_monitor_lock(c)
    try:
        prepared = prepare(rt, c, lock)
        console = prepared.console
        try:
            return _supervise(rt, c, prepared, lock, stdin, stdout, stderr, proxy_signals)
        finally:
            console.close()
    finally:
        os.close(lock)


def _supervise(rt: Runtime, c: Container, prepared: Prepared, lock: int, stdin: Any, stdout: BinaryIO | None,
               stderr: BinaryIO | None, proxy_signals: bool) -> tuple[int, bytes, bytes]:
    """Launch, relay until the command's output ends, finish: `run_foreground` past `prepare`."""
    collect: dict[str, bytearray] | None = None
    if stdout is None and stderr is None:
        collect = {"stdout": bytearray(), "stderr": bytearray()}
    output = open_writer(c.log_path, c.hostconfig.get("LogConfig"))
    tty = bool(c.config.get("Tty"))
    stdin_fd = stdin.fileno() if stdin is not None and hasattr(stdin, "fileno") else None
    try:
        listener = attach.listen(c.dir)
        try:
            if tty:
                copy_winsize(stdin_fd if stdin_fd is not None else 0, prepared.console.master)
            proc, io = _launch(prepared, c, None if tty else stdin)
        except BaseException:
            listener.close()
            raise
    except BaseException:
        output.close()
        finished(rt, c, prepared, 255, lock)
        raise
    launched(c, proc)
    prepared.start_proxy()
    events.container_event(rt.layout.root, c, "start")
    start = proc_start_time(proc.pid) or 0
    local = Local(sinks={"stdout": stdout, "stderr": stderr}, collect=collect, stdin=stdin_fd if tty else None)
    relay = Relay(io, output, c.log_path, listener=listener, local=local)

    def deliver(sig: int) -> None:
        signal_container(proc.pid, start, sig, wait_command=0)

    def supervise_output() -> int:
        with RawTerminal(stdin_fd if tty else None):
            relay.run()
        return proc.wait()

    code: int | None = None
    try:
        try:
            if proxy_signals:
                with SignalProxy(deliver):
                    returncode = supervise_output()
            else:
                returncode = supervise_output()
        except BaseException:
            # interrupted (KeyboardInterrupt in a library caller): don't leave the container behind
            c.killed_marker.touch()
            signal_container(proc.pid, start, 9)  # waits for the exec: see signal_container
            returncode = proc.wait()
            output.close()
            code, _ = finished(rt, c, prepared, returncode, lock)
            raise
        finally:
            _close_pipes(proc)
        output.close()
        code, failure = finished(rt, c, prepared, returncode, lock)
    finally:
        relay.close(code)
    if failure is not None:
        raise LaunchError(f"Cannot start container {c.short_id}: {failure}")
    if collect is not None:
        return code, bytes(collect["stdout"]), bytes(collect["stderr"])
    return code, b"", b""


def start_detached(rt: Runtime, c: Container, attach_to: Sequence[attach.Hello] = (),
                   winsize: tuple[int, int] | None = None) -> list[attach.AttachSession]:
    """Prepare here (errors reach the caller), then fork a monitor that launches and supervises.

    `attach_to`: clients joined before the command runs (one connected session each is returned, so an
    attach made by a start misses nothing); `winsize`: the terminal's first size (rows, columns).
    Double fork: the monitor is not our child (no zombie in a long-lived caller) and has its own
    session. Returns when the monitor reports the launch (or raises its error).
    """
    lock = acquire_monitor_lock(c)
    try:
        prepared = prepare(rt, c, lock)
        pairs = []
        try:
            for hello in attach_to:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                pairs.append((ours, theirs))
                ours.sendall(hello.encode())  # queued for the monitor, which reads it before the launch
            if winsize is None and c.hostconfig.get("ConsoleSize"):
                rows, cols = c.hostconfig["ConsoleSize"]
                winsize = (int(rows), int(cols))  # the size the client gave at create
            if winsize is not None and c.config.get("Tty"):
                set_winsize(prepared.console.master, *winsize)
            rfd, wfd = os.pipe2(os.O_CLOEXEC)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(rfd)
                _monitor_child(rt, c, prepared, wfd, lock, [theirs for _, theirs in pairs])
        except BaseException:
            for ours, _ in pairs:
                ours.close()
            raise
        finally:
            prepared.console.close()  # the monitor has its own copies
            prepared.close_proxy()
            for _, theirs in pairs:
                theirs.close()
        os.close(wfd)
        os.waitpid(pid, 0)
        with os.fdopen(rfd, "rb") as r:
            report = r.read()
    finally:
        os.close(lock)
    sessions = [attach.AttachSession(ours) for ours, _ in pairs]
    if report.startswith(b"ok"):
        return sessions
    for session in sessions:
        session.close()
    message = report.decode(errors="replace") or "the monitor died before launching the container"
    code_text, _, text = message.partition(":")
    err = LaunchError(text or message)
    if code_text.isdigit():
        err.exit_code = int(code_text)
    raise err


def _monitor_child(rt: Runtime, c: Container, prepared: Prepared, wfd: int, lock: int,
                   clients: list[socket.socket]) -> None:  # pragma: no cover
    """First child: new session, fork the monitor, exit. The monitor supervises until the command ends."""
    status = 0
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        detach_stdio()
        code, ran_for = _run_once(rt, c, prepared, lock, clients, wfd)
        _restart_while_asked(rt, c, lock, code, ran_for)
    except BaseException as err:
        status = 1
        try:
            os.write(wfd, f"125:{err}".encode())
        except OSError:
            pass  # the starter already has its answer (or is gone): nobody left to tell
    finally:
        os._exit(status)


def _run_once(rt: Runtime, c: Container, prepared: Prepared, lock: int, clients: list[socket.socket],
              wfd: int | None) -> tuple[int, float]:  # pragma: no cover - runs in the monitor
    """One run under the detached monitor: launch, relay until the command ends, finish. Reports the
    launch on `wfd` (the first run's starter waits for it). (exit code, seconds the command ran)"""
    output = open_writer(c.log_path, c.hostconfig.get("LogConfig"))
    try:
        listener = attach.listen(c.dir)
        proc, io = _launch(prepared, c, None)
    except BaseException as err:
        output.close()
        finished(rt, c, prepared, 255, lock)
        code = getattr(err, "exit_code", 125)
        if wfd is None:
            log.warning("container %s: restart failed: %s", c.short_id, err)
            return code, 0.0
        os.write(wfd, f"{code}:{err}".encode())
        os._exit(1)
    launched(c, proc)
    prepared.start_proxy()
    began = time.monotonic()
    events.container_event(rt.layout.root, c, "start")
    relay = Relay(io, output, c.log_path, listener=listener)
    for sock in clients:
        relay.add_client(sock, wait_hello=5.0)
    if wfd is not None:
        os.write(wfd, b"ok")
        os.close(wfd)
    code = None
    try:
        relay.run()
    finally:
        returncode = proc.wait()
        _close_pipes(proc)
        output.close()
        try:
            code, _ = finished(rt, c, prepared, returncode, lock)
        finally:
            relay.close(code)
    return code, time.monotonic() - began


def _restart_while_asked(rt: Runtime, c: Container, lock: int, code: int,
                         ran_for: float) -> None:  # pragma: no cover - runs in the monitor
    """The restart policy, daemonless: after each run, while the policy asks for another and no user
    stopped the container, wait Docker's back-off and run it again. The lock is let go meanwhile, so
    `wait` sees the exit and `rm`/`start` may step in; a start or removal that did ends the loop."""
    backoff = restart.Backoff()
    while True:
        try:
            c.reload()
        except PydockError:
            return  # removed (an --rm container never restarts: create refuses the pair)
        policy = restart.RestartPolicy.of(c.hostconfig)
        if not policy.wants_restart(code, c.state.restart_count, c.stopped_by_user_marker.exists()):
            return
        me, me_start = self_identity()
        with c.locked():  # `restarting`, as long as this monitor lives
            c.save_state(replace(c.state, restarting=True, monitor_pid=me, monitor_start=me_start))
        os.close(lock)
        time.sleep(backoff.next(ran_for))
        try:
            lock = monitorlock.acquire(c.monitor_lock_path, lambda: c.reload().state.running, c.short_id)
        except PydockError as err:
            log.debug("container %s: not restarted (%s)", c.short_id, err)
            return
        try:
            c.reload()
        except PydockError:
            return
        if c.state.running:
            return  # a user's start got there first: its monitor has it
        if c.stopped_by_user_marker.exists():
            with c.locked():
                c.save_state(replace(c.state, restarting=False, monitor_pid=0, monitor_start=0))
            os.close(lock)
            return
        with c.locked():
            c.save_state(replace(c.state, restart_count=c.state.restart_count + 1))
        events.container_event(rt.layout.root, c, "restart")
        try:
            prepared = prepare(rt, c, lock)
        except PydockError as err:
            log.warning("container %s: restart failed: %s", c.short_id, err)
            code, ran_for = (err.exit_code if err.exit_code >= 125 else 125), 0.0
            continue
        try:
            code, ran_for = _run_once(rt, c, prepared, lock, [], None)
        finally:
            prepared.console.close()
