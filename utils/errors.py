"""pydock's exception types: the library raises these; only the front ends (the CLI, the Engine API
server, the pytest plugin) turn them into messages, exit codes and HTTP statuses."""

from __future__ import annotations

#: Docker's status for its own usage errors (an unknown flag, a bad value, a missing argument)
USAGE_EXIT = 125


class PydockError(Exception):
    """Base of every error pydock raises on purpose; `str(err)` is the one-line message a user sees."""

    exit_code = 1


class NotFound(PydockError):
    """A container, image, device, name or link that does not exist."""


class Conflict(PydockError):
    """The request is valid but clashes with current state (name in use, container running, image in use)."""


class InvalidArgument(PydockError):
    """Bad input from the caller: syntax, ranges, conflicting options."""

    exit_code = 2


class RemovalFailed(Conflict):
    """A `--rm` container ended but could not be removed; `status` is its command's exit code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class StorageError(PydockError):
    """The storage driver (device-mapper pool, overlay, vfs) failed or refused."""


class PoolFull(StorageError):
    """Free data or metadata space in the thin pool is below the configured threshold."""


class KernelFeatureMissing(PydockError):
    """The running kernel lacks something the requested operation needs (e.g. dm-thin-pool)."""


class ArchiveError(PydockError):
    """A tar stream could not be read or written (truncated, not a tar, bad compression)."""


class UnsafeArchive(ArchiveError):
    """A layer tried to write outside its root or carried a forbidden entry."""


class UnsafeRoot(PydockError):
    """pydock's state root is not private to root (another user could plant or swap what pydock trusts)."""


class LaunchError(PydockError):
    """pydock failed to start a container before the command ran (exit status 125)."""

    exit_code = 125


class NetworkError(PydockError):
    """Bridge, veth, IP allocation or iptables failed."""
