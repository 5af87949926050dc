"""The CLI command server's wire facts, shared by the client (`cli/client.py`) and the server
(`cli/cmdserver.py`): where the socket is, who may use one, and how a request is encoded.

Built-in modules only (no struct, zlib or enum) and nothing at import time: the client pays for
every import on every command.
"""

from __future__ import annotations

import posix  # not os: the client imports this module (see client.py)
import sys

#: set to 0/no/off/false to run every command in its own interpreter, as before the server existed
SWITCH_ENV = "PYDOCK_CLI_SERVER"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")
#: seconds an idle server waits for the next command before it exits (default IDLE_SECONDS)
IDLE_ENV = "PYDOCK_CLI_SERVER_IDLE"
IDLE_SECONDS = 60.0
#: root-only directory holding the sockets (tmpfs: nothing survives a reboot)
SOCKET_DIR = "/run/pydock"
#: the namespaces a client must share with its parent, and the server with its client
NAMESPACES = ("mnt", "net", "pid", "ipc", "uts", "user", "cgroup")

#: request header: magic, then the payload's length (4 bytes, big-endian); the payload follows, and the
#: fds ride on the header's sendmsg
MAGIC = b"PDK1"
HEADER_SIZE = 8
#: fds a request carries: the client's stdin, stdout, stderr and its working directory
PASSED_FDS = 4
FDS_SIZE = PASSED_FDS * 4


def enabled(environ: dict[str, str]) -> bool:
    """False when the user switched the server off; ValueError for a value that is not a switch."""
    value = environ.get(SWITCH_ENV, "1").strip().lower()
    if value in _ON or value in _OFF:
        return value in _ON
    raise ValueError(f"{SWITCH_ENV}={environ[SWITCH_ENV]!r} is not a switch: use 1 or 0 (true/false, yes/no, on/off)")


def idle_seconds(environ: dict[str, str]) -> float:
    """How long an idle server waits for a command; ValueError unless a finite number of seconds above 0."""
    text = environ.get(IDLE_ENV)
    if text is None:
        return IDLE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):  # NaN fails this too
        raise ValueError(f"{IDLE_ENV}={text!r} is not a number of seconds above 0")
    return value


def socket_path(own_namespaces: tuple[str, ...]) -> str:
    """This interpreter's socket: one server per interpreter, module path, flags and set of namespaces
    (`namespaces("self")`), so a server never runs code other than the client's own (another checkout,
    venv or PYTHONPATH has another socket) nor in another namespace."""
    key = "\0".join([sys.executable, *sys.path, repr(sys.flags), str(posix.getuid()), *own_namespaces])
    digest = 0xCBF29CE484222325  # FNV-1a, 64 bits: a name, not a secret (the socket's directory is root's)
    for byte in key.encode():
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{SOCKET_DIR}/cli-{digest:016x}.sock"


def flush_stdio() -> None:
    """Flush sys.stdout and sys.stderr before a command's end is told (os._exit skips it): what cannot be
    delivered (a closed pipe, no stream at all) is dropped, as at interpreter exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def header(length: int) -> bytes:
    return MAGIC + length.to_bytes(4, "big")


def payload_length(data: bytes) -> int:
    """The length a header announces; ValueError if it is not one."""
    if len(data) != HEADER_SIZE or data[:4] != MAGIC:
        raise ValueError("malformed request")
    return int.from_bytes(data[4:], "big")


def pack_fds(fds: tuple[int, ...]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)


def unpack_fds(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True) for i in range(0, len(data) - 3, 4)]


def namespaces(pid: int | str) -> tuple[str, ...]:
    """The namespace identities of a process (`net:[4026531840]`, ...), and its root directory's."""
    st = posix.stat(f"/proc/{pid}/root")
    return (*(posix.readlink(f"/proc/{pid}/ns/{ns}") for ns in NAMESPACES), f"root:{st.st_dev}:{st.st_ino}")


def encode_request(argv: list[bytes], environ: list[bytes], umask: int) -> bytes:
    """The request payload: NUL-separated umask, argc, argv, then the environment's KEY=VALUE items."""
    return b"\0".join([b"%d" % umask, b"%d" % len(argv), *argv, *environ])


def decode_request(payload: bytes) -> tuple[list[bytes], dict[bytes, bytes], int]:
    """(argv, environment, umask) from a request payload; ValueError if it is malformed."""
    fields = payload.split(b"\0")
    umask, argc = int(fields[0]), int(fields[1])
    if argc < 1 or len(fields) < 2 + argc or not 0 <= umask <= 0o777:
        raise ValueError("malformed request")
    argv = fields[2:2 + argc]
    environ = {}
    for item in fields[2 + argc:]:
        key, sep, value = item.partition(b"=")
        if sep and key:
            environ[key] = value
    return argv, environ, umask
