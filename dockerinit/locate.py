"""Find the dockerinit helper this pydock was built with, check its identity, and pin a private copy.

Docker 0.7 (`utils.DockerInitPath`) accepted a dockerinit only if its sha1 matched the one compiled
into the docker binary, then copied it to `<root>/init/dockerinit-<VERSION>` so that a package
upgrade never replaced the file under running containers. pydock does the same with the sha256
that `hack/make.sh binary|deb` writes into the generated `pydock.utils.buildinfo` (INIT_SHA256).

A development checkout has no buildinfo: there the helper is a two-line shim that runs
`python -m pydock.dockerinit` with the interpreter running pydock (or $PYDOCK_DOCKERINIT as given).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pydock.utils.errors import LaunchError
from pydock.utils.paths import RootLayout
from pydock.utils.version import VERSION, build_info

log = logging.getLogger(__package__)
ENV_PATH = "PYDOCK_DOCKERINIT"
# the helper's name inside the single-file binary (a zip member at the archive root)
EMBEDDED_NAME = "pydock-dockerinit"
SYSTEM_PATHS = (Path("/usr/libexec/pydock/dockerinit"), Path("/usr/local/libexec/pydock/dockerinit"))
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BuildIdentity:
    """What a built pydock knows about its helper: version, commit and the helper's sha256."""

    version: str
    commit: str
    init_sha256: str


def build_identity() -> BuildIdentity | None:
    """The identity baked in by hack/make.sh binary/deb; None in a development checkout."""
    buildinfo = build_info()
    if buildinfo is None:  # a development checkout
        return None
    sha = getattr(buildinfo, "INIT_SHA256", None)
    if not sha:
        return None
    return BuildIdentity(getattr(buildinfo, "VERSION", VERSION), getattr(buildinfo, "GIT_COMMIT", "unknown"), sha)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _running_archive() -> Path | None:
    """The zip file this module was imported from (the single-file binary), if any."""
    archive = getattr(globals().get("__loader__"), "archive", None)
    return Path(archive) if archive else None


def _embedded_helper() -> bytes | None:
    archive = _running_archive()
    if archive is None:
        return None
    import zipfile  # lazy: only when pydock runs from its zipapp

    try:
        with zipfile.ZipFile(archive) as zf:
            return zf.read(EMBEDDED_NAME)
    except (OSError, KeyError, zipfile.BadZipFile) as err:  # the files beside it are looked at next
        log.debug("no helper inside %s: %s: %s", archive, type(err).__name__, err)
        return None


def candidate_paths() -> list[Path]:
    """Files that may hold the helper, in lookup order (the pinned copy and the embedded one aside)."""
    found: list[Path] = []
    env = os.environ.get(ENV_PATH)
    if env:
        found.append(Path(env))
    selves = [Path(sys.argv[0])] if sys.argv and sys.argv[0] and os.path.isfile(sys.argv[0]) else []
    archive = _running_archive()
    if archive is not None:
        selves.insert(0, archive)
    for self_path in selves:
        for base in dict.fromkeys([self_path.absolute().parent, self_path.resolve().parent]):
            found += [base / "dockerinit", base / f"dockerinit-{VERSION}",
                      base.parent / "libexec" / "pydock" / "dockerinit"]
    found += SYSTEM_PATHS
    return list(dict.fromkeys(found))


def _pinned_path(layout: RootLayout) -> Path:
    return layout.init / f"dockerinit-{VERSION}"


def _write_pinned(layout: RootLayout, data: bytes) -> Path:
    """Pin the helper at `<root>/init/dockerinit-<version>` (0700)."""
    return _atomic_write(_pinned_path(layout), data)


def _atomic_write(dest: Path, data: bytes) -> Path:
    """Write an executable 0700 file by rename, so a copy already in use is never rewritten in place."""
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o700)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _dev_shim(layout: RootLayout) -> Path:
    """Development checkout: a shim running `python -m pydock.dockerinit` with this interpreter."""
    env = os.environ.get(ENV_PATH)
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LaunchError(f"Could not locate dockerinit: ${ENV_PATH}={env} is not an executable file")
        return path
    text = (f"#!{sys.executable}\n"
            "# pydock development dockerinit shim (written by pydock.dockerinit.locate)\n"
            "import runpy\n"
            "runpy.run_module('pydock.dockerinit', run_name='__main__', alter_sys=True)\n").encode()
    dest = layout.init / f"dockerinit-{VERSION}-dev"
    try:
        if dest.read_bytes() == text:
            return dest
    except FileNotFoundError:
        pass  # the first launch on this root: written below
    except OSError as err:
        log.debug("rewriting the dev shim %s: %s", dest, err)
    return _atomic_write(dest, text)


def dockerinit_path(layout: RootLayout) -> Path:
    """The helper to exec for containers of this root: a pinned copy whose sha256 matches this build.

    Raises LaunchError("Could not locate dockerinit: ...") naming every place looked at.
    """
    ident = build_identity()
    if ident is None:
        return _dev_shim(layout)
    pinned = _pinned_path(layout)
    rejected: list[str] = []
    try:
        if sha256_file(pinned) == ident.init_sha256:
            return pinned
        rejected.append(f"{pinned} (sha256 mismatch)")
    except FileNotFoundError:
        pass  # not pinned yet on this root: the first launch pins it below
    except OSError as err:
        rejected.append(f"{pinned} ({err.strerror})")
    embedded = _embedded_helper()
    if embedded is not None:
        if hashlib.sha256(embedded).hexdigest() == ident.init_sha256:
            return _write_pinned(layout, embedded)
        rejected.append(f"{_running_archive()}:{EMBEDDED_NAME} (sha256 mismatch)")
    looked: list[str] = []
    for path in candidate_paths():
        looked.append(str(path))
        try:
            if sha256_file(path) != ident.init_sha256:
                rejected.append(f"{path} (sha256 mismatch)")
                continue
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue  # most candidates do not exist: the error lists every place looked at
        except OSError as err:
            rejected.append(f"{path} ({err.strerror})")
            continue
        if hashlib.sha256(data).hexdigest() == ident.init_sha256:  # re-check what we copy, not what we hashed
            return _write_pinned(layout, data)
    detail = f"rejected {', '.join(rejected)}; " if rejected else ""
    raise LaunchError(
        f"Could not locate dockerinit: this usually means pydock {ident.version} (commit {ident.commit}) was "
        f"packaged incorrectly; no helper with sha256 {ident.init_sha256[:12]} found ({detail}looked at "
        f"{', '.join(looked)}; set ${ENV_PATH} to override)")
