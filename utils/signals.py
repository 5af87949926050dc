"""Signal names as Docker takes them (`KILL`, `SIGKILL`, `9`, `SIGRTMIN+3`): one parser for `kill -s`,
STOPSIGNAL, `--stop-signal` and the API's `signal=`."""

from __future__ import annotations

import re
import signal

from pydock.utils.errors import InvalidArgument

_REALTIME = re.compile(r"RTM(IN|AX)(?:([+-])(\d+))?")


def parse_signal(sig: int | str) -> int:
    """`KILL`, `SIGKILL`, `9`, 9 or `SIGRTMIN+3` -> the signal's number; anything else (0, past
    SIGRTMAX, an unknown name) raises InvalidArgument."""
    if isinstance(sig, int):
        number = sig
    else:
        text = sig.strip().upper()
        bare = text.removeprefix("SIG")
        realtime = _REALTIME.fullmatch(bare)
        if text.isdigit():
            number = int(text)
        elif realtime:
            base = signal.SIGRTMIN if realtime[1] == "IN" else signal.SIGRTMAX
            offset = int(realtime[3] or 0) * (-1 if realtime[2] == "-" else 1)
            number = base + offset
            if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                raise InvalidArgument(f"Invalid signal: {sig}")
        elif bare and bare.isalnum() and isinstance(getattr(signal.Signals, "SIG" + bare, None), signal.Signals):
            number = int(getattr(signal.Signals, "SIG" + bare))
        else:
            raise InvalidArgument(f"Invalid signal: {sig}")
    if not 0 < number <= signal.SIGRTMAX:
        raise InvalidArgument(f"Invalid signal: {sig}")
    return number
