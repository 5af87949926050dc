"""Detach keys: the key sequence that leaves an attached terminal without stopping the container
(ctrl-p ctrl-q unless `--detach-keys` says otherwise), parsed as Docker spells it and found in a stream.
"""

from __future__ import annotations

from pydock.utils.errors import InvalidArgument

#: ctrl-p, ctrl-q
DEFAULT = b"\x10\x11"
_CTRL_SYMBOLS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse(spec: str | None) -> bytes:
    """`ctrl-p,ctrl-q`, `ctrl-a,d`, `ctrl-@`... -> the bytes; empty or None: the default.

    Each comma-separated key is one character or `ctrl-` with a letter or one of `@[\\]^_`."""
    if not spec:
        return DEFAULT
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            out.append(ord(key))
            continue
        low = key.lower()
        if low.startswith("ctrl-") and len(key) == 6:
            sym = low[5]
            if "a" <= sym <= "z":
                out.append(ord(sym) - ord("a") + 1)
                continue
            if sym in _CTRL_SYMBOLS:
                out.append(_CTRL_SYMBOLS[sym])
                continue
        raise InvalidArgument(f"Invalid detach keys ({spec}): {key!r} is not a key (use a character or "
                              "ctrl-<a-z, @, [, \\, ], ^, _>, separated by commas)")
    return bytes(out)


class DetachScanner:
    """Watches typed input for the detach sequence: `feed` returns the bytes to pass on and whether the
    sequence was completed. A partial match is held back until it completes or turns out not to be
    the sequence (then it is passed on, as typed). Holds at most len(keys) bytes."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = 0  # how many bytes of `keys` are matched (and held back)

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for byte in data:
            if byte == self.keys[self._held]:
                self._held += 1
                if self._held == len(self.keys):
                    self._held = 0
                    return bytes(out), True
                continue
            if self._held:  # not the sequence after all: what was held goes on, as typed
                out += self.keys[:self._held]
                self._held = 0
                if byte == self.keys[0]:
                    self._held = 1
                    continue
            out.append(byte)
        return bytes(out), False
