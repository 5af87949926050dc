"""What the bench scripts share: timing one command, the podman options this host needs, and a root
with the busybox image imported (run as `python bench/NAME.py`, so this directory is on sys.path)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: podman on this host needs these (its default limits exceed the machine's)
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
#: the `pydock` users run: the installed entry point, which hands each command to the warm CLI
#: command server (cli/cmdserver.py)
PYDOCK = str(Path(sys.executable).with_name("pydock"))


def cli_env(*, server: bool = True) -> dict[str, str]:
    """The environment a bench runs pydock in: none of the caller's PYDOCK_* settings, cached bytecode
    (as installed copies have), and the command server on, or off (every command pays Python's
    start-up and pydock's imports: the first command after an idle minute)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not server:
        env["PYDOCK_CLI_SERVER"] = "0"
    return env


#: the busybox image in a bench's private podman store (`private_podman`, `podman_import_busybox`)
PODMAN_BUSYBOX = "localhost/bench-busybox:latest"


def private_podman(work: Path) -> list[str] | None:
    """podman on a store of the bench's own under `work` (runc when installed, else crun), None without
    podman; `remove_everything` resets the store."""
    if not shutil.which("podman"):
        return None
    return ["podman", "--root", str(work / "podman" / "root"), "--runroot", str(work / "podman" / "run"),
            "--runtime", "runc" if shutil.which("runc") else "crun"]


def podman_import_busybox(podman: list[str], work: Path) -> None:
    """The bench's busybox tarball (busybox_root wrote it) into the private store as PODMAN_BUSYBOX."""
    subprocess.run([*podman, "import", str(work / "busybox.tar"), PODMAN_BUSYBOX], check=True, capture_output=True)


def stop_cli_servers() -> None:
    """SIGTERM the CLI command servers started in this process's network namespace (a bench that made its
    own namespace stops them before it goes, so none keeps that namespace alive for its idle minute)."""
    ours = os.readlink("/proc/self/ns/net")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "pydock-cli" and \
                    os.readlink(f"/proc/{pid}/ns/net") == ours:
                os.kill(int(pid), signal.SIGTERM)
        except OSError:
            continue  # gone meanwhile


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds `cmd` took; a failure ends the bench with its stderr."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return dt


def busybox_root(prefix: str, driver: str) -> tuple[Path, Path, bytes]:
    """(work dir, a pydock root under it holding busybox:latest, the busybox tarball's bytes)."""
    from pydock.graph.busybox import busybox_tar_bytes
    from pydock.runtime.runtime import Runtime

    work = Path(tempfile.mkdtemp(prefix=prefix))
    root = work / "root"
    tar_bytes = busybox_tar_bytes()
    (work / "busybox.tar").write_bytes(tar_bytes)
    with Runtime(root, driver, bridge="none") as rt:
        rt.images.import_(io.BytesIO(tar_bytes), repo="busybox", tag="latest")
    return work, root, tar_bytes


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM a `pydock serve` the bench started, and wait (kill after 30 s)."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def remove_everything(work: Path, root: Path, driver: str, podman: list[str] | None = None) -> None:
    """The bench's pydock root emptied and its store shut down, podman's private store reset, `work` gone."""
    from pydock.runtime.runtime import Runtime

    with Runtime(root, driver, bridge="none") as rt:
        for c in rt.containers(all=True):
            rt.remove(c, force=True)
        for image in rt.images.graph.list():
            rt.images.graph.delete(image.id)
        rt.driver.shutdown()
    if podman is not None:
        subprocess.run([*podman, "rm", "-f", "-a", "-t", "0"], capture_output=True)
        subprocess.run([*podman, "system", "reset", "-f"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
