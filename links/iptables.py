"""A thin typed wrapper over the `iptables` binary: idempotent insert/append/delete of one rule (no policy here).

Every rule operation first asks `iptables -C` whether the rule is there, so inserting twice or deleting
a missing rule is a no-op; `-w` waits for the xtables lock other processes may hold. Any failure, or any
output from a rule command (Docker 0.7's rule), raises NetworkError with iptables' own message.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from enum import Enum

from pydock.utils.errors import NetworkError

IPTABLES = "iptables"


class Table(str, Enum):
    FILTER = "filter"
    NAT = "nat"


@dataclass(frozen=True)
class Rule:
    """One rule: its table, chain and match/target arguments (everything after `-A CHAIN`)."""

    table: Table
    chain: str
    args: tuple[str, ...]

    def to_json(self) -> list[str]:
        return [self.table.value, self.chain, *self.args]

    @classmethod
    def from_json(cls, data: list[str]) -> Rule:
        return cls(Table(data[0]), data[1], tuple(data[2:]))

    def __str__(self) -> str:
        return f"-t {self.table.value} {self.chain} {' '.join(self.args)}"


def available() -> bool:
    return shutil.which(IPTABLES) is not None


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """`iptables -w ARGS`; the caller decides what a non-zero status means."""
    try:
        return subprocess.run([IPTABLES, "-w", *args], capture_output=True, text=True, close_fds=True,
                              timeout=60)
    except FileNotFoundError:
        raise NetworkError("iptables is not installed (needed for container networking)") from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"iptables {' '.join(args)}: timed out") from None


def _checked(*args: str) -> str:
    proc = run(*args)
    message = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    if proc.returncode != 0:
        raise NetworkError(f"iptables {' '.join(args)}: {message[0] if message else f'exit status {proc.returncode}'}")
    return proc.stdout


def exists(rule: Rule) -> bool:
    """`iptables -C`: 0 = present, 1 = absent (or missing chain), anything else is an error."""
    proc = run("-t", rule.table.value, "-C", rule.chain, *rule.args)
    if proc.returncode == 0:
        return True
    if proc.returncode == 1:
        return False
    raise NetworkError(f"iptables -C {rule}: {proc.stderr.strip() or proc.returncode}")


def _apply(flag: str, rule: Rule, *position: str) -> None:
    out = _checked("-t", rule.table.value, flag, rule.chain, *position, *rule.args)
    if out.strip():
        raise NetworkError(f"iptables {flag} {rule}: unexpected output: {out.strip().splitlines()[0]}")


def insert(rule: Rule, position: int = 1) -> bool:
    """Insert at `position` unless present; True if it was added."""
    if exists(rule):
        return False
    _apply("-I", rule, str(position))
    return True


def append(rule: Rule) -> bool:
    """Append unless present; True if it was added."""
    if exists(rule):
        return False
    _apply("-A", rule)
    return True


def delete(rule: Rule) -> bool:
    """Delete every copy of the rule; True if one was there, a missing rule is not an error."""
    found = False
    while exists(rule):
        _apply("-D", rule)
        found = True
    return found


def chain_exists(table: Table, chain: str) -> bool:
    return run("-t", table.value, "-n", "-L", chain).returncode == 0


def list_rules(table: Table, chain: str | None = None) -> list[str]:
    """`iptables -S [chain]` lines, for inspection and tests."""
    return _checked("-t", table.value, "-S", *([chain] if chain else [])).splitlines()


def ensure_chain(table: Table, chain: str) -> bool:
    """`iptables -N chain` unless it exists; True if it was made."""
    if chain_exists(table, chain):
        return False
    proc = run("-t", table.value, "-N", chain)
    if proc.returncode != 0 and not chain_exists(table, chain):  # another process may have made it meanwhile
        raise NetworkError(f"iptables -N {chain}: {proc.stderr.strip() or proc.returncode}")
    return proc.returncode == 0


def delete_chain(table: Table, chain: str) -> bool:
    """Flush and delete `chain` (nothing may jump to it any more); True if it was there."""
    if not chain_exists(table, chain):
        return False
    _checked("-t", table.value, "-F", chain)
    _checked("-t", table.value, "-X", chain)
    return True
