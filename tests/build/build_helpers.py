"""Realistic build contexts for the build tests (the same ones pydock and podman build), and what a user
checks about a build: its output, the images and containers it left."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

#: the base every test image starts from: the busybox rootfs tar, imported under this name by both peers
BASE = "localhost/bbase:latest"

APP_DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE=localhost/bbase:latest
FROM $BASE AS build
ARG VERSION=0.0
ARG FLAVOR
WORKDIR /src
COPY src/ ./
RUN mkdir -p /out \\
    && for f in *.txt; do tr a-z A-Z < "$f" > "/out/$f"; done \\
    && echo "version=$VERSION flavor=${FLAVOR:-plain}" > /out/VERSION
RUN cat /out/*.txt | wc -l > /out/lines

FROM $BASE
RUN echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd \\
    && echo 'app:x:1000:' >> /etc/group && mkdir -p /home/app && chown app:app /home/app
ENV APP_HOME=/opt/app \\
    GREETING="hello world"
WORKDIR $APP_HOME
COPY --from=build /out/ ./data/
COPY --chown=app:app config/ ./config/
COPY --chown=1000:1000 scripts/run.sh /usr/local/bin/
COPY . /ctx/
USER app
EXPOSE 8080
CMD ["sh", "/usr/local/bin/run.sh"]
"""

RUN_SH = """\
echo "$GREETING from $(pwd) as $(id -un)"
cat data/VERSION data/lines
ls data
stat -c '%U:%G %a %n' config config/app.conf /usr/local/bin/run.sh
find /ctx -type f | sort
"""

#: what the app prints (its CMD) when built with these build args
APP_OUTPUT = """\
hello world from /opt/app as app
version={version} flavor={flavor}
2
VERSION
file000.txt
file001.txt
lines
app:app 755 config
app:app 644 config/app.conf
app:app 755 /usr/local/bin/run.sh
/ctx/.dockerignore
/ctx/Dockerfile
/ctx/config/app.conf
/ctx/docs/keep.md
/ctx/scripts/run.sh
/ctx/src/file000.txt
/ctx/src/file001.txt
"""

APP_IGNORE = "*.log\nsecrets/\ndocs\n!docs/keep.md\n"


def app_context(path: Path, files: int = 2) -> Path:
    """The app: two stages, build args, a .dockerignore with an exception, files owned by a user."""
    for rel, data in {
        "Dockerfile": APP_DOCKERFILE, ".dockerignore": APP_IGNORE, "scripts/run.sh": RUN_SH,
        "config/app.conf": "port=8080\n", "secrets/token": "s3cret\n", "build.log": "noise\n",
        "docs/readme.md": "docs\n", "docs/keep.md": "kept\n",
    }.items():
        write(path / rel, data)
    os.chmod(path / "scripts/run.sh", 0o755)
    for i in range(files):
        write(path / f"src/file{i:03d}.txt", f"line of file {i}\n")
    return path


TOOLS_DOCKERFILE = """\
# escape=`
FROM localhost/bbase:latest
SHELL ["/bin/sh", "-ec"]
ENV DIR=/opt/tools LIST="a b c"
ADD payload.tar.gz $DIR/
ADD notes.txt ${DIR}/notes-copy.txt
COPY ["name with spaces.txt", "/opt/tools/"]
RUN for x in $LIST; do echo "item $x"; done > $DIR/items `
    && echo "${DIR%/*} ${LIST// /,}" > $DIR/expanded
LABEL org.example.tool="tools" version=1
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD test -f /opt/tools/items
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /opt/tools/items /opt/tools/expanded /opt/tools/notes-copy.txt; cd /opt/tools; stat -c '%a %u:%g %s %n' * pkg/*; stat -c '%Y %n' pkg/*; cat pkg/*"]
"""


def tools_context(path: Path) -> Path:
    """ADD of a local .tar.gz (unpacked) and a plain file, JSON COPY, SHELL, substitution forms, ENTRYPOINT."""
    write(path / "Dockerfile", TOOLS_DOCKERFILE)
    write(path / "notes.txt", "notes\n")
    write(path / "name with spaces.txt", "spaces\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in [("pkg/bin.sh", b"echo tool\n", 0o755), ("pkg/README", b"readme\n", 0o644)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, 1_600_000_000, 0, 0
            tar.addfile(info, io.BytesIO(data))
    (path / "payload.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    return path


ONBUILD_BASE = """\
FROM localhost/bbase:latest
ONBUILD COPY trigger.txt /trigger.txt
ONBUILD RUN echo "built on $(cat /trigger.txt)" > /onbuild.out
"""
ONBUILD_CHILD = """\
FROM onbase:1
CMD ["cat", "/onbuild.out"]
"""


def write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def tar_of(path: Path, gz: bool = False) -> bytes:
    """The directory as a tar stream (what the docker CLI sends), optionally gzipped."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for item in sorted(path.rglob("*")):
            tar.add(item, arcname=str(item.relative_to(path)), recursive=False)
    return buf.getvalue()
