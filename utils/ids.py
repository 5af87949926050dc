"""Ids: 64-hex generation and validation, 12-char display, unique-prefix resolution."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from pydock.utils.errors import InvalidArgument, NotFound

ID_LENGTH = 64
SHORT_ID_LENGTH = 12
_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_PREFIX_RE = re.compile(r"^[0-9a-f]{1,64}$")


def generate_id() -> str:
    """A fresh random 64-hex id (32 random bytes), never all digits so it cannot be read as a number."""
    while True:
        value = os.urandom(32).hex()
        if not value[:SHORT_ID_LENGTH].isdigit():
            return value


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def validate_id(value: str) -> str:
    """Return `value` if it is a full 64-hex id, else raise (ids are used as path components)."""
    if not is_valid_id(value):
        raise InvalidArgument(f"Invalid id: {value!r} (expected 64 hex characters)")
    return value


def truncate_id(value: str) -> str:
    return value[:SHORT_ID_LENGTH]


def resolve_prefix(prefix: str, ids: Iterable[str], kind: str = "id") -> str:
    """The single id in `ids` starting with `prefix`; unknown or ambiguous prefixes raise NotFound."""
    if not _PREFIX_RE.match(prefix):
        raise NotFound(f"No such {kind}: {prefix}")
    matches = [i for i in ids if i.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"No such {kind}: {prefix}")
    raise NotFound(f"No such {kind}: {prefix} (ambiguous: matches {len(matches)} {kind}s)")
