"""Content digests (`sha256:<hex>`): parsing, streaming hashers, and chain ids (OCI image spec).

One place for the rules every distribution path shares: a digest is `sha256:` plus 64 lowercase hex
digits (other algorithms are refused by name), a layer's chain id is sha256 of "<parent chain> <diff id>".
"""

from __future__ import annotations

import re
from typing import BinaryIO

from pydock.utils.errors import InvalidArgument

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class DigestMismatch(InvalidArgument):
    """Content whose bytes do not hash to the digest it was promised under."""


def validate_digest(value: str) -> str:
    """`value` if it is a `sha256:<64 hex>` digest; other algorithms are refused with their name."""
    m = _DIGEST_RE.match(value or "")
    if not m:
        raise InvalidArgument(f"invalid digest {value!r}: expected sha256:<64 hex digits>")
    algo, hexpart = m.groups()
    if algo != "sha256":
        raise InvalidArgument(f"unsupported digest algorithm {algo!r} in {value}: only sha256 is supported")
    if not _SHA256_RE.match(hexpart):
        raise InvalidArgument(f"invalid digest {value!r}: expected sha256:<64 hex digits>")
    return value


def is_digest(value: str) -> bool:
    try:
        validate_digest(value)
    except InvalidArgument:
        return False
    return True


def hex_of(digest: str) -> str:
    """The 64 hex digits of a validated sha256 digest."""
    return validate_digest(digest).split(":", 1)[1]


def sha256_digest(data: bytes) -> str:
    import hashlib  # lazy: OpenSSL's loading (~4 ms) is paid only by what hashes

    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    if not parent_chain:
        return diff_id
    return sha256_digest(f"{parent_chain} {diff_id}".encode())


class HashingReader:
    """A read-only stream that hashes (and counts) every byte read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        import hashlib  # lazy: see sha256_digest

        self.raw = raw
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.hasher.update(data)
            self.size += len(data)
        return data

    def readinto(self, buf: memoryview | bytearray) -> int:
        readinto = getattr(self.raw, "readinto", None)
        if readinto is None:
            data = self.read(len(buf))
            buf[: len(data)] = data
            return len(data)
        n = readinto(buf) or 0
        if n:
            view = memoryview(buf)[:n]
            self.hasher.update(view)
            self.size += n
        return n

    def readable(self) -> bool:
        return True

    def drain(self, chunk: int = 1 << 20) -> None:
        """Read (and hash) whatever is left, e.g. the padding after a tar's end marker."""
        while self.read(chunk):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def check_digest(actual: str, expected: str, what: str) -> None:
    """Raise DigestMismatch naming `what` when the two digests differ."""
    if actual != expected:
        raise DigestMismatch(f"{what}: digest mismatch: expected {expected}, got {actual}")
