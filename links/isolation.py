"""User networks kept apart: one filter chain of pydock's own (Docker's DOCKER-ISOLATION shape), jumped
to first from FORWARD, holding a DROP for each pair of pydock bridges in both directions and, for an
internal network, for anything leaving or entering it. Rules are derived from bridge names, so removing
a network (or repairing after a crash) deletes exactly the lines that name its bridge."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydock.links import iptables
from pydock.links.iptables import Rule, Table

log = logging.getLogger(__package__)
CHAIN = "PYDOCK-ISOLATION"
JUMP = Rule(Table.FILTER, "FORWARD", ("-j", CHAIN))


def pair(a: str, b: str) -> list[Rule]:
    """Traffic between bridges `a` and `b` is dropped, both ways."""
    return [Rule(Table.FILTER, CHAIN, ("-i", a, "-o", b, "-j", "DROP")),
            Rule(Table.FILTER, CHAIN, ("-i", b, "-o", a, "-j", "DROP"))]


def internal(bridge: str) -> list[Rule]:
    """An internal network's traffic stays on its bridge."""
    return [Rule(Table.FILTER, CHAIN, ("-i", bridge, "!", "-o", bridge, "-j", "DROP")),
            Rule(Table.FILTER, CHAIN, ("-o", bridge, "!", "-i", bridge, "-j", "DROP"))]


def keep_on_top() -> None:
    """If the chain exists, make sure FORWARD jumps to it before any other rule (bridges insert theirs
    at the top too, so whoever installs rules calls this last)."""
    if not iptables.chain_exists(Table.FILTER, CHAIN):
        return
    lines = [line for line in iptables.list_rules(Table.FILTER, "FORWARD") if line.startswith("-A ")]
    if lines and lines[0].split() == ["-A", "FORWARD", "-j", CHAIN]:
        return
    iptables.delete(JUMP)
    iptables.insert(JUMP)


def isolate(bridge: str, others: Iterable[str], is_internal: bool) -> None:
    """Install `bridge`'s rules against every other pydock bridge (idempotent)."""
    iptables.ensure_chain(Table.FILTER, CHAIN)
    wanted = [r for other in others if other and other != bridge for r in pair(bridge, other)]
    if is_internal:
        wanted += internal(bridge)
    for rule in wanted:
        iptables.append(rule)
    keep_on_top()


def forget(bridge: str) -> None:
    """Delete every rule of the chain naming `bridge`; the chain and its jump go when it is empty."""
    if not iptables.chain_exists(Table.FILTER, CHAIN):
        return
    remaining = 0
    for line in iptables.list_rules(Table.FILTER, CHAIN):
        words = line.split()
        if words[:2] != ["-A", CHAIN]:
            continue
        if bridge in words:
            iptables.delete(Rule(Table.FILTER, CHAIN, tuple(words[2:])))
        else:
            remaining += 1
    if not remaining:
        iptables.delete(JUMP)
        iptables.delete_chain(Table.FILTER, CHAIN)
