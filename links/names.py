"""Container names: the random `adjective_surname` generator, name syntax checks and `--link name:alias` parsing."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from pydock.utils.errors import InvalidArgument

# Docker 0.7.2's rule: one leading alphanumeric, then at least one of [a-zA-Z0-9_.-]; an optional leading "/".
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES = (
    "agile", "amber", "ancient", "bold", "brave", "bright", "busy", "calm", "clever", "cosmic",
    "crisp", "curious", "daring", "dreamy", "eager", "early", "fancy", "fearless", "fluffy", "frosty",
    "gentle", "giddy", "golden", "happy", "hardy", "humble", "jolly", "keen", "kind", "lively",
    "lucid", "lucky", "mellow", "merry", "misty", "modest", "nimble", "noble", "patient", "plucky",
    "polite", "proud", "quiet", "rapid", "serene", "shiny", "silent", "sleepy", "steady", "sunny",
    "swift", "tender", "tidy", "vivid", "wise", "witty", "zealous",
)

SURNAMES = (
    "agnesi", "archimedes", "babbage", "bardeen", "bell", "bohr", "boole", "borg", "carson", "cerf",
    "curie", "darwin", "dijkstra", "einstein", "euclid", "euler", "faraday", "fermat", "fermi", "feynman",
    "franklin", "galileo", "gauss", "goodall", "hamilton", "hawking", "heisenberg", "hodgkin", "hopper", "hypatia",
    "joliot", "kepler", "knuth", "kowalevski", "lalande", "lamarr", "leakey", "lovelace", "lumiere", "mayer",
    "mcclintock", "meitner", "mendel", "newton", "nobel", "noether", "pare", "pascal", "pasteur", "perlman",
    "pike", "poincare", "ritchie", "shannon", "swirles", "tesla", "thompson", "torvalds", "turing", "wozniak",
)

_ALIAS_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# the link target: a name, a name path or an id prefix
_TARGET_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_./-]*$")


def _candidate(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}"


def generate_name(taken: Callable[[str], bool], *, rng: random.Random | None = None,
                  attempts: int = 5) -> str:
    """A free random `adjective_surname` (no leading `/`; `taken(name)` says if it is used), digits appended after collisions."""
    rng = rng or random.SystemRandom()
    for _ in range(attempts):
        name = _candidate(rng)
        if not taken(name):
            return name
    for _ in range(attempts):
        name = f"{_candidate(rng)}{rng.randint(0, 9)}"
        if not taken(name):
            return name
    while True:  # practically unreachable: ~3400 x 10 names all taken
        name = f"{_candidate(rng)}{rng.randint(10, 10**6)}"
        if not taken(name):
            return name


def validate_name(name: str) -> str:
    """Check a `--name` (leading `/` optional) and return it as `/name`; InvalidArgument otherwise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def parse_link(spec: str) -> tuple[str, str]:
    """`name:alias` -> (name, alias): exactly two non-empty parts, the alias a valid single path component."""
    parts = spec.split(":") if isinstance(spec, str) else []
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidArgument(f"Invalid link format: {spec} (expected name:alias)")
    name, alias = parts
    alias = alias[1:] if alias.startswith("/") else alias
    if not _ALIAS_RE.fullmatch(alias):
        raise InvalidArgument(f"Invalid link alias ({alias}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    if not _TARGET_RE.fullmatch(name):
        raise InvalidArgument(f"Invalid link format: {spec} (expected name:alias)")
    return name, alias
