"""Build pydock's distributable bundles: `binary` (one zipapp file) and `deb` (a dpkg-deb package).

Run by hack/make/binary and hack/make/deb (see hack/make/.common for the environment:
SRC, VERSION, GIT_COMMIT, SOURCE_DATE_EPOCH). Usage: .pack.py binary|deb DEST_DIR.

Both bundles carry the same dockerinit helper shape: a zipapp of the pydock modules that
`python3 -m pydock.dockerinit` imports, run with `-IS`; its sha256 is written into the generated
`pydock/utils/buildinfo.py` (INIT_SHA256) so that `pydock.dockerinit.locate` accepts only
the helper built together with the running pydock.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import modulefinder
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

SRC = Path(os.environ["SRC"])
VERSION = os.environ["VERSION"]
GIT_COMMIT = os.environ.get("GIT_COMMIT", "unknown")
EPOCH = max(int(os.environ.get("SOURCE_DATE_EPOCH") or time.time()), 315532800)  # zip dates start in 1980
SHEBANG = os.environ.get("PYDOCK_PYTHON", "/usr/bin/python3")
MIN_PYTHON = (3, 11)
# pure-Python distributions the single-file binary carries (python3-prctl is compiled: the distro's)
VENDORED = ("click", "tabulate", "pyroute2")
EMBEDDED_HELPER = "pydock-dockerinit"  # same name as pydock.dockerinit.locate.EMBEDDED_NAME

DEB_DEPENDS = ("python3 (>= 3.11)", "python3-click (>= 8.0)", "python3-tabulate (>= 0.8)",
               "python3-pyroute2 (>= 0.7)", "python3-prctl (>= 1.7)", "lxc", "iptables", "e2fsprogs",
               "util-linux", "procps", "tar", "xz-utils", "busybox-static", "tini")
MAINTAINER = "pydock developers <pydock@localhost>"

_VERSION_CHECK = (f"import sys\nif sys.version_info < {MIN_PYTHON!r}:\n"
                  f"    sys.exit('pydock needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer, not ' + "
                  "sys.version.split()[0])\n")
# The single-file binary imports lazily from its own zip, and zipimport re-opens the archive by path
# and trusts the offsets it read at start: a binary replaced while a detached monitor runs would
# hand that monitor garbage ("bad local file header"). So the binary imports through an fd held
# on its own file: the running process keeps the bytes it started with, however the path changes.
_HOLD_ARCHIVE = """import os
def _hold_archive():
    archive = getattr(globals().get('__loader__'), 'archive', None)
    if not archive:
        return
    try:
        fd = os.open(archive, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    held = '/proc/self/fd/%d' % fd
    if not os.path.isfile(held):  # no /proc: keep importing by path
        os.close(fd)
        return
    names = {archive, os.path.abspath(archive)}
    sys.path[:] = [held if entry in names or os.path.abspath(entry) in names else entry for entry in sys.path]
    for name in names:
        sys.path_importer_cache.pop(name, None)
_hold_archive()
"""
# The binary runs each command in its own process: a CLI command server (cli/cmdserver.py) would import
# from an archive path its clients hold open, and could not tell a replaced binary's code from its own.
MAIN_CLI = _VERSION_CHECK + _HOLD_ARCHIVE + "from pydock.cli.main import main\nsys.exit(main())\n"
# /usr/bin/pydock of the .deb is the client of the CLI command server, as the venv's entry point is; it
# runs python -S (site costs every command ~3 ms here): the client needs only dist-packages, and a command
# run in the client's own process has site's work done first (late_site)
DEB_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
MAIN_SCRIPT = (_VERSION_CHECK + f"sys.path.append({DEB_DIST_PACKAGES!r})\n"
               "from pydock.cli.client import main\nsys.exit(main(late_site=True))\n")
# The helper runs before every packaged launch, so it starts as lean as Python can: -I (no environment
# variables, no user site), -S (no site), and only the pydock modules it imports (nothing vendored).
HELPER_FLAGS = "-IS"
HELPER_ENTRY = "pydock/dockerinit/__main__.py"
MAIN_HELPER = _VERSION_CHECK + "from pydock.dockerinit.__main__ import main\nsys.exit(main())\n"


def log(msg: str) -> None:
    print(f"+ {msg}", file=sys.stderr)


# ---------------------------------------------------------------- staging the sources

def package_dirs() -> dict[str, Path]:
    """pydock's packages and their source folders, read from pyproject.toml (the one list of them)."""
    tool = tomllib.loads((SRC / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = tool.get("package-dir", {})
    result = {}
    for pkg in tool["packages"]:
        parent = max((p for p in mapping if pkg == p or pkg.startswith(p + ".")), key=len)
        rest = pkg[len(parent):].lstrip(".")
        result[pkg] = SRC / mapping[parent] / rest.replace(".", "/") if rest else SRC / mapping[parent]
    return result


def buildinfo_text(flavour: str, init_sha256: str | None) -> str:
    return (f'"""Generated by hack/make.sh {flavour} at build time; never committed."""\n\n'
            f"VERSION = {VERSION!r}\nGIT_COMMIT = {GIT_COMMIT!r}\nBUILD_FLAVOUR = {flavour!r}\n"
            f"BUILD_EPOCH = {EPOCH}\nINIT_SHA256 = {init_sha256!r}\n")


def stage_pydock(dest: Path, buildinfo: str) -> None:
    """Copy every pydock package into dest/pydock/..., plus a generated utils/buildinfo.py."""
    top = dest / "pydock"
    top.mkdir(parents=True)
    (top / "__init__.py").write_text('"""pydock: a container runtime in the shape of Docker 0.7."""\n')
    for pkg, folder in package_dirs().items():
        if not (folder / "__init__.py").is_file():
            raise SystemExit(f"hack/make: package {pkg} has no {folder}/__init__.py")
        out = top.joinpath(*pkg.split(".")[1:])
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(folder.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix not in (".pyc", ".pyo"):
                shutil.copy2(f, out / f.name)
    (top / "utils" / "buildinfo.py").write_text(buildinfo)
    if not (top / "dockerinit" / "__main__.py").is_file():
        log("WARNING: dockerinit/__main__.py is missing: the helper cannot run `python3 -m pydock.dockerinit`")


def stage_vendored(dest: Path) -> None:
    """Copy the pure-Python dependencies from the build environment (refusing compiled ones)."""
    for name in VENDORED:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"hack/make: {name} is not installed for {sys.executable} (run hack/make.sh dev, "
                             "or set PYDOCK_VENV to a virtualenv that has it)") from None
        if not dist.files:  # a distro package (egg-info without a file list): copy its top-level names
            _copy_top_level(dist, name, dest)
            continue
        for rel in dist.files:
            parts = rel.parts
            if parts[0] == ".." or "__pycache__" in parts or rel.suffix in (".pyc", ".pyo"):
                continue
            if rel.suffix in (".so", ".pyd"):
                raise SystemExit(f"hack/make: {name} has a compiled file {rel}; it cannot go in the zipapp")
            if parts[0].endswith(".dist-info") and parts[-1] not in ("METADATA", "top_level.txt") \
                    and "licenses" not in parts and "LICENSE" not in parts[-1].upper():
                continue
            src = Path(dist.locate_file(rel))
            if not src.is_file():  # distro packages list build-time paths (scripts-3.x/...) that are not installed
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
        log(f"vendored {name} {dist.version}")


def _copy_top_level(dist: importlib.metadata.Distribution, name: str, dest: Path) -> None:
    """Vendor a distribution that lists no files (e.g. Debian's python3-click) by its top_level.txt names."""
    site = Path(dist.locate_file(""))
    tops = (dist.read_text("top_level.txt") or name).split()
    for top in tops:
        if (site / top).is_dir():
            for f in (site / top).rglob("*"):
                if f.suffix in (".so", ".pyd"):
                    raise SystemExit(f"hack/make: {name} has a compiled file {f}; it cannot go in the zipapp")
            shutil.copytree(site / top, dest / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (site / f"{top}.py").is_file():
            shutil.copy2(site / f"{top}.py", dest / f"{top}.py")
        else:
            raise SystemExit(f"hack/make: cannot find {top} of {name} in {site}")
    log(f"vendored {name} {dist.version} (by top-level names from {site})")


def compile_tree(root: Path) -> None:
    """Legacy-layout .pyc next to each .py (what zipimport loads), unchecked-hash so they are reproducible."""
    for src in sorted(root.rglob("*.py")):
        rel = src.relative_to(root).as_posix()
        py_compile.compile(str(src), cfile=str(src.with_suffix(".pyc")), dfile=rel, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


# ---------------------------------------------------------------- zipapps

def prune_to_imports(tree: Path, entry: str) -> None:
    """Delete from tree/pydock every module that `entry` never imports, at any depth (imports inside
    functions count: modulefinder reads every code object), and the folders left empty."""
    finder = modulefinder.ModuleFinder(path=[str(tree)])
    finder.run_script(str(tree / entry))
    kept = {Path(m.__file__) for m in finder.modules.values() if m.__file__}
    for path in sorted((tree / "pydock").rglob("*.py")):
        if path not in kept:
            path.unlink()
    for folder in sorted((tree / "pydock").rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def write_zipapp(tree: Path, out: Path, main: str, *, comment: str, extra: dict[str, bytes] | None = None,
                 flags: str = "") -> bytes:
    """A reproducible zipapp: shebang line (with the interpreter's `flags`), then a zip of tree (sorted,
    fixed dates) with __main__.py."""
    date = time.gmtime(EPOCH)[:6]
    entries: dict[str, tuple[bytes, int]] = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            entries[path.relative_to(tree).as_posix()] = (path.read_bytes(), 0o644)
    entries["__main__.py"] = (main.encode(), 0o644)
    for name, data in (extra or {}).items():
        entries[name] = (data, 0o755)
    buf = io.BytesIO()
    buf.write(f"#!{SHEBANG} {flags}\n".encode() if flags else f"#!{SHEBANG}\n".encode())
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(entries):
            data, mode = entries[name]
            info = zipfile.ZipInfo(name, date_time=date)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.create_system = 3
            zf.writestr(info, data, compresslevel=9)
        zf.comment = comment.encode()
    blob = buf.getvalue()
    out.write_bytes(blob)
    out.chmod(0o755)
    os.utime(out, (EPOCH, EPOCH))
    return blob


def build_helper(work: Path, out: Path) -> str:
    """The dockerinit helper zipapp (the pydock modules it imports); returns its sha256."""
    tree = work / "helper-tree"
    stage_pydock(tree, buildinfo_text("dockerinit", None))
    prune_to_imports(tree, HELPER_ENTRY)
    compile_tree(tree)
    blob = write_zipapp(tree, out, MAIN_HELPER, comment=f"pydock-dockerinit {VERSION} {GIT_COMMIT}",
                        flags=HELPER_FLAGS)
    return hashlib.sha256(blob).hexdigest()


def build_binary(dest: Path) -> None:
    work = dest / ".work"
    helper = dest / f"dockerinit-{VERSION}"
    init_sha = build_helper(work, helper)
    tree = work / "cli-tree"
    stage_pydock(tree, buildinfo_text("binary", init_sha))
    stage_vendored(tree)
    compile_tree(tree)
    binary = dest / f"pydock-{VERSION}"
    write_zipapp(tree, binary, MAIN_CLI, comment=f"pydock {VERSION} {GIT_COMMIT}",
                 extra={EMBEDDED_HELPER: helper.read_bytes()})
    for link, target in (("pydock", binary.name), ("dockerinit", helper.name)):
        (dest / link).symlink_to(target)
    shutil.rmtree(work)
    sums = "".join(f"{hashlib.sha256((dest / n).read_bytes()).hexdigest()}  {n}\n" for n in (binary.name, helper.name))
    (dest / "SHA256SUMS").write_text(sums)
    log(f"{binary} ({binary.stat().st_size // 1024} KiB, helper sha256 {init_sha[:12]})")


# ---------------------------------------------------------------- Debian package

def _run_staged(pythonpath: Path, code: str, env: dict[str, str] | None = None) -> str:
    """Run code against the staged pydock (click etc. from the build environment)."""
    # no __pycache__ in the staged tree: the package's .pyc files are made by py3compile on install
    full_env = {**os.environ, "PYTHONPATH": str(pythonpath), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    out = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"hack/make: generating from the staged tree failed:\n{out.stderr}")
    return out.stdout


MAN_PAGE_CODE = r'''
import inspect, sys, time
import click
from pydock.cli.main import cli
from pydock.utils.version import VERSION

def esc(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + l if l[:1] in ".'" else l) for l in text.splitlines())

def options(cmd, ctx):
    out = []
    for param in cmd.get_params(ctx):
        rec = param.get_help_record(ctx)
        if rec and rec[1] and "--help" not in rec[0]:
            out += [".TP", "\\fB" + esc(rec[0]) + "\\fR", esc(rec[1] or "")]
    return out

ctx = click.Context(cli, info_name="pydock")
date = time.strftime("%Y-%m-%d", time.gmtime(int(sys.argv[1])))
lines = ['.TH PYDOCK 1 "%s" "pydock %s" "User Commands"' % (date, VERSION), ".SH NAME",
         "pydock \\- " + esc(inspect.cleandoc(cli.help or "").splitlines()[0].split(": ", 1)[-1]),
         ".SH SYNOPSIS", ".B pydock", "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARG\\fR...]",
         ".SH DESCRIPTION", esc(inspect.cleandoc(cli.help or "")),
         ".PP", "Run \\fBpydock\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR for the options of one command.",
         ".SH GLOBAL OPTIONS"] + options(cli, ctx) + [".SH COMMANDS"]
for name in cli.list_commands(ctx):
    try:
        cmd = cli.get_command(ctx, name)
    except Exception as err:  # a command whose module is not written yet must not break the build
        print(f"man page: skipping {name}: {err}", file=sys.stderr)
        continue
    if cmd is None:
        continue
    sub = click.Context(cmd, info_name=name, parent=ctx)
    lines += [".SS \"pydock " + esc(name) + " " + esc(" ".join(cmd.collect_usage_pieces(sub))) + "\"",
              esc(inspect.cleandoc(cmd.help or cmd.short_help or ""))] + options(cmd, sub)
lines += [".SH ENVIRONMENT", ".TP", "\\fBPYDOCK_ROOT\\fR", "Default for \\fB\\-g\\fR (/var/lib/pydock).",
          ".TP", "\\fBPYDOCK_DRIVER\\fR", "Default for \\fB\\-s\\fR.",
          ".TP", "\\fBPYDOCK_DOCKERINIT\\fR", "Another place to look for the dockerinit helper (its sha256 must match).",
          ".TP", "\\fBPYDOCK_CLI_SERVER\\fR", "0 runs every command in its own process instead of handing it to "
          "the warm CLI command server.",
          ".TP", "\\fBPYDOCK_CLI_SERVER_IDLE\\fR", "Seconds an idle command server waits before it exits (60).",
          ".SH FILES", ".TP", "/var/lib/pydock", "State: images, containers, storage pools, names.",
          ".TP", "/usr/libexec/pydock/dockerinit", "The helper run between fork and exec of lxc.",
          ".TP", "/run/pydock", "Sockets of the CLI command servers (root only).",
          ".SH SEE ALSO", "\\fBlxc\\-execute\\fR(1), \\fBdmsetup\\fR(8)"]
print("\n".join(lines))
'''

COMPLETION_CODE = MAIN_SCRIPT


def _deb_control(installed_kib: int) -> str:
    return (f"Package: pydock\nVersion: {VERSION}\nArchitecture: all\nMaintainer: {MAINTAINER}\n"
            f"Installed-Size: {installed_kib}\nDepends: {', '.join(DEB_DEPENDS)}\nSection: admin\n"
            "Priority: optional\nHomepage: https://example.invalid/pydock\n"
            "Description: container runtime in the shape of Docker 0.7\n"
            " pydock runs containers with lxc on copy-on-write storage: a device-mapper\n"
            " thin pool, or overlay/vfs where the kernel has no device-mapper. It keeps\n"
            " an image graph with tags, a SQLite name and link registry, and bridges\n"
            " containers with veth pairs and iptables.\n"
            f" .\n Built from git commit {GIT_COMMIT}.\n")


POSTINST = """#!/bin/sh
set -e
# byte-compile like dh_python3 would; skipped for dpkg --root installs (DPKG_ROOT set)
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && command -v py3compile >/dev/null 2>&1; then
	py3compile -p pydock
fi
# enable (never start) the boot-time unit, as dh_installsystemd would
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper enable pydock.service >/dev/null || true
fi
"""
POSTRM = """#!/bin/sh
set -e
if [ "$1" = purge ] && [ -z "${DPKG_ROOT:-}" ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper purge pydock.service >/dev/null || true
fi
"""
#: what a restarted Docker daemon would start, started at boot (`pydock boot`): restart policies
#: `always` and `unless-stopped` need no daemon, only this oneshot
SYSTEMD_UNIT = """[Unit]
Description=Start the pydock containers whose restart policy asks for it (always, unless-stopped)
Documentation=man:pydock(1)
After=network-online.target local-fs.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/pydock boot
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""
PRERM = """#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && command -v py3clean >/dev/null 2>&1; then
	py3clean -p pydock
fi
"""
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pydock

Files: *
Copyright: pydock developers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
"""


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=EPOCH, filename="") as f:
        f.write(data)
    return buf.getvalue()


def build_deb(dest: Path) -> None:
    work = dest / ".work"
    root = work / "root"
    dist_packages = root / DEB_DIST_PACKAGES.lstrip("/")
    libexec = root / "usr/libexec/pydock"
    libexec.mkdir(parents=True)
    init_sha = build_helper(work, libexec / "dockerinit")
    stage_pydock(dist_packages, buildinfo_text("deb", init_sha))
    bindir = root / "usr/bin"
    bindir.mkdir(parents=True)
    (bindir / "pydock").write_text(f"#!{SHEBANG} -S\n" + MAIN_SCRIPT)
    (bindir / "pydock").chmod(0o755)

    man = _run_staged(dist_packages, MAN_PAGE_CODE.replace("sys.argv[1]", str(EPOCH)))
    mandir = root / "usr/share/man/man1"
    mandir.mkdir(parents=True)
    (mandir / "pydock.1.gz").write_bytes(_gzip(man.encode()))
    completion = _run_staged(dist_packages, COMPLETION_CODE, {"_PYDOCK_COMPLETE": "bash_source"})
    if "_PYDOCK_COMPLETE" not in completion:
        raise SystemExit("hack/make: click did not produce a bash completion script")
    compdir = root / "usr/share/bash-completion/completions"
    compdir.mkdir(parents=True)
    (compdir / "pydock").write_text(completion)
    doc = root / "usr/share/doc/pydock"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    changelog = (f"pydock ({VERSION}) unstable; urgency=medium\n\n  * Built from git commit {GIT_COMMIT}.\n\n"
                 f" -- {MAINTAINER}  {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(EPOCH))}\n")
    (doc / "changelog.Debian.gz").write_bytes(_gzip(changelog.encode()))
    unitdir = root / "lib/systemd/system"
    unitdir.mkdir(parents=True)
    (unitdir / "pydock.service").write_text(SYSTEMD_UNIT)

    files = sorted(p for p in root.rglob("*") if p.is_file())
    debian = root / "DEBIAN"
    debian.mkdir()
    installed_kib = sum((p.stat().st_size + 1023) // 1024 for p in files)
    (debian / "control").write_text(_deb_control(installed_kib))
    (debian / "md5sums").write_text("".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n"
                                            for p in files))
    for name, text in (("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)):
        (debian / name).write_text(text)
        (debian / name).chmod(0o755)
    for p in root.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() or os.access(p, os.X_OK) else 0o644)
        os.utime(p, (EPOCH, EPOCH), follow_symlinks=False)
    out = dest / f"pydock_{VERSION}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
    shutil.rmtree(work)
    log(f"{out} ({out.stat().st_size // 1024} KiB, helper sha256 {init_sha[:12]})")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("binary", "deb"):
        print("usage: .pack.py binary|deb DEST_DIR", file=sys.stderr)
        return 2
    dest = Path(argv[2]).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    (build_binary if argv[1] == "binary" else build_deb)(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
