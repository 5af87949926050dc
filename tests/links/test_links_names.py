"""Names: generation, `--name` syntax and `--link name:alias` parsing."""

from __future__ import annotations

import random

import pytest

from pydock.links.names import ADJECTIVES, NAME_RE, SURNAMES, generate_name, parse_link, validate_name
from pydock.utils.errors import InvalidArgument


def test_generated_names_are_valid_and_varied() -> None:
    names = {generate_name(lambda n: False) for _ in range(200)}
    assert len(names) > 150
    for n in names:
        adj, sur = n.split("_")
        assert adj in ADJECTIVES and sur in SURNAMES
        assert NAME_RE.match(n)
    assert len(ADJECTIVES) >= 50 and len(SURNAMES) >= 50


def test_collisions_are_retried_then_get_a_digit() -> None:
    seen: list[str] = []

    def taken(n: str) -> bool:
        seen.append(n)
        return n[-1].isalpha()  # every plain name is taken

    name = generate_name(taken, rng=random.Random(1))
    assert name[-1].isdigit() and name[:-1].split("_")[0] in ADJECTIVES
    assert len(seen) >= 6
    assert validate_name(name) == "/" + name


def test_generate_name_finds_the_last_free_name() -> None:
    free = "quiet_turing"
    name = generate_name(lambda n: n != free, rng=random.Random(3), attempts=10_000)
    assert name == free


@pytest.mark.parametrize("good", ["web", "/web", "db_1", "a.b-c", "9lives", "ab"])
def test_valid_names(good: str) -> None:
    assert validate_name(good) == "/" + good.lstrip("/")


@pytest.mark.parametrize("bad", ["", "a", "-x", "_x", ".x", "we b", "web/db", "//web", "x$", "ü12", "web\n"])
def test_invalid_names(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_name(bad)
    assert str(err.value) == f"Invalid container name ({bad}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"


def test_parse_link() -> None:
    assert parse_link("db:db") == ("db", "db")
    assert parse_link("redis:cache") == ("redis", "cache")
    assert parse_link("/db:/x") == ("/db", "x")
    assert parse_link("3f2a9c:d") == ("3f2a9c", "d")


@pytest.mark.parametrize("bad", ["db", "db:", ":db", "a:b:c", "", ":"])
def test_parse_link_format_errors(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_link(bad)
    assert str(err.value) == f"Invalid link format: {bad} (expected name:alias)"


@pytest.mark.parametrize("bad", ["db:a/b", "db:-x", "db:a b", "we b:x"])
def test_parse_link_bad_parts(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_link(bad)
