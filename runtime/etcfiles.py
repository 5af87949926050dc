"""The files pydock puts in a container's view: the init layer's mount-point stubs, and the contents
of /etc/hosts and /etc/resolv.conf (bind-mounted from the container's directory, as Docker 0.7 did)."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from pydock.utils.errors import InvalidArgument, PydockError
from pydock.utils.safepath import kind_of, make_dirs_in_root, make_file_in_root, open_beneath

log = logging.getLogger(__package__)

#: mount points lxc itself mounts on, by these very paths (autodev, proc, sysfs): real directories in
#: the init layer whatever the image has there, so no symlink of the image ever takes a kernel mount
#: somewhere else.
RUNTIME_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys")
#: init-layer stubs pydock binds onto (Docker 0.7's setupInitLayer): made inside the rootfs, symlinks on
#: the way resolved inside it (the binds are rewritten to the same canonical paths at start).
INIT_DIRS = ("etc",)
INIT_FILES = (".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: a host or domain name (RFC 1123 labels)
_DOMAIN_RE = re.compile(r"[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62}))*\.?")
HOSTS_TAIL = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
              "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def write_init_layer(root: Path) -> None:
    """The directories and empty files that must exist in every container for the mounts to land on.

    Nothing is ever written through a symlink of the image: the runtime's own mount points are made
    real directories (an image's `dev -> /somewhere` is replaced in this layer), the stubs are made
    where the image's symlinks lead *inside* the rootfs.
    """
    try:
        for d in RUNTIME_DIRS:
            _real_dir(root, d)
        for d in INIT_DIRS:
            make_dirs_in_root(root, d)
        for f in INIT_FILES:
            found = make_file_in_root(root, f)
            if found.is_dir:
                log.debug("init layer: the image has a directory at /%s (%s): left as it is", f, found.path)
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise PydockError(f"Cannot prepare the container's mount points: {err.strerror or err}{where}") from None


def _real_dir(root: Path, rel: str) -> None:
    """Make `rel` (whose parent is already a real directory) a directory of the layer: a symlink or any
    other non-directory the image has there is replaced, never followed."""
    parent, _, name = rel.rpartition("/")
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pfd = open_beneath(rfd, parent or ".", _DIR_FLAGS)
    finally:
        os.close(rfd)
    try:
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None  # not in the image: made below
        if st is not None and stat.S_ISDIR(st.st_mode):
            return
        if st is not None:
            log.debug("init layer: /%s is %s in the image; replaced by a directory", rel, kind_of(st.st_mode))
            os.unlink(name, dir_fd=pfd)
        os.mkdir(name, 0o755, dir_fd=pfd)
    finally:
        os.close(pfd)


def check_dns(dns: Sequence[str]) -> tuple[str, ...]:
    """`--dns` values: IP addresses only, as Docker validates them (they become resolv.conf lines)."""
    out = []
    for d in dns:
        try:
            out.append(str(ipaddress.ip_address(str(d).strip())))
        except ValueError:
            raise InvalidArgument(f"Invalid DNS server {d!r}: it must be an IP address") from None
    return tuple(out)


def check_dns_search(domains: Sequence[str]) -> tuple[str, ...]:
    """`--dns-search` values: domain names (`.` alone: no search domain, as Docker takes it)."""
    for d in domains:
        if d != "." and (not _DOMAIN_RE.fullmatch(d) or len(d) > 253):
            raise InvalidArgument(f"Invalid DNS search domain {d!r}")
    return tuple(d for d in domains if d != ".")


def resolv_conf(dns: Sequence[str], search: Sequence[str] = ()) -> str:
    """Custom DNS, else the host's resolv.conf, else (only local nameservers) Google's, like Docker 0.7;
    `search` (--dns-search) replaces the search domains."""
    if dns:
        text = "".join(f"nameserver {d}\n" for d in check_dns(dns))
    else:
        try:
            text = Path("/etc/resolv.conf").read_text()
        except OSError:
            text = ""
        servers = [line.split()[1] for line in text.splitlines()
                   if line.startswith("nameserver") and len(line.split()) > 1]
        if not servers or all(s.startswith("127.") or s == "::1" for s in servers):
            text = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    if search:
        kept = "".join(line + "\n" for line in text.splitlines() if not line.split()[:1] in (["search"], ["domain"]))
        domains = check_dns_search(search)
        text = kept + (f"search {' '.join(domains)}\n" if domains else "")
    return text


def check_extra_host(spec: str) -> str:
    """`--add-host NAME:IP` -> its /etc/hosts line."""
    name, sep, ip = spec.partition(":")
    if not sep or not _DOMAIN_RE.fullmatch(name):
        raise InvalidArgument(f"invalid argument {spec!r} for --add-host: expected NAME:IP")
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
    return f"{address}\t{name}"


def hosts_file(ip: str | None, hostname: str, domain: str, extra: Sequence[str] = ()) -> str:
    """`/etc/hosts`: the container's own line first, then links, then the localhost block."""
    lines = []
    if ip:
        full = f"{hostname}.{domain} {hostname}" if domain else hostname
        lines.append(f"{ip}\t{full}\n")
    lines.extend(e + "\n" for e in extra)
    return "".join(lines) + HOSTS_TAIL


#: where the network members' lines begin in a container's hosts file (all after it is rewritten)
HOSTS_MARK = "# pydock network members\n"


def set_hosts_section(path: Path, lines: Sequence[str]) -> bool:
    """Replace the network members' lines of a container's hosts file, in place: the file is bind-mounted
    into the running container, so its inode must stay (a rename would leave the container the old one).
    One pwrite of the whole text then a truncate; the text is derived from the networks' state and
    written again on every change and start, so a crash mid-write is repaired by the next one.
    False if the file is gone (the container was removed meanwhile)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            text = f.read().decode(errors="replace")
        base = text.split(HOSTS_MARK, 1)[0]
        data = (base + (HOSTS_MARK + "".join(line + "\n" for line in lines) if lines else "")).encode()
        if data != text.encode():
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return True
