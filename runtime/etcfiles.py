"""The files pydock puts in a container's view: the init layer's mount-point stubs, and the contents
of /etc/hosts and /etc/resolv.conf (bind-mounted from the container's directory, as Docker 0.7 did)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: init-layer stubs: mount points lxc and pydock bind onto (Docker 0.7's setupInitLayer).
INIT_DIRS = ("dev/pts", "dev/shm", "proc", "sys", "etc")
INIT_FILES = (".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname")
HOSTS_TAIL = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
              "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def write_init_layer(root: Path) -> None:
    """The directories and empty files that must exist in every container for the binds to land on."""
    for d in INIT_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in INIT_FILES:
        p = root / f
        if p.is_symlink() or p.is_dir():
            continue  # never follow an image's symlink out of the layer
        if not p.exists():
            p.touch(mode=0o644)


def resolv_conf(dns: Sequence[str]) -> str:
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
