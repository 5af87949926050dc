"""`import URL`: an http(s) URL opened as a stream (redirects followed, every socket step bounded by a
timeout), with its length when the server says it, for the caller's progress display."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from contextlib import contextmanager
from collections.abc import Iterator
from typing import BinaryIO

from pydock.utils.errors import InvalidArgument, NotFound, PydockError

TIMEOUT = 30.0


class DownloadFailed(PydockError):
    """The URL could not be fetched (unreachable, refused, or an HTTP error other than 404)."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


@contextmanager
def open_url(url: str, timeout: float = TIMEOUT) -> Iterator[tuple[BinaryIO, int | None]]:
    """(stream, length or None) of `url`; NotFound on 404, DownloadFailed on anything else."""
    if not is_url(url):
        raise InvalidArgument(f"{url}: only http:// and https:// URLs can be imported")
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "pydock"}),
                                      timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise NotFound(f"{url}: 404 Not Found") from None
        raise DownloadFailed(f"{url}: {err.code} {err.reason}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadFailed(f"cannot download {url}: {reason}") from None
    try:
        length = resp.headers.get("Content-Length")
        yield resp, int(length) if length and length.isdigit() else None
    finally:
        resp.close()
