"""`POST /build`: the classic builder behind the Engine API (the docker CLI's legacy builder, the SDK's
`images.build`). The body is the context as a tar (gzip and friends accepted), extracted as it streams;
the answer is Docker's JSON stream (`stream`, `aux` with each stage's image, `error`). Until the build
has said anything an error is an HTTP status, as dockerd's is; later it ends the stream."""

from __future__ import annotations

import json
from typing import Any

from pydock.runtime.api import decode
from pydock.runtime.api.httpd import ChunkedWriter, Handler, Request, bool_value
from pydock.runtime.api.services import Services
from pydock.runtime.builder.state import BuildFailed
from pydock.utils.errors import InvalidArgument, PydockError

#: query fields the clients always send; only these values are what pydock's builder does
_DEFAULTS = {"cpusetcpus": ("",), "cpusetmems": ("",), "cpushares": ("", "0"), "cpuquota": ("", "0"),
             "cpuperiod": ("", "0"), "memory": ("", "0"), "memswap": ("", "0"), "cgroupparent": ("",),
             "shmsize": ("", "0"), "ulimits": ("", "null", "[]"), "cachefrom": ("", "null", "[]"),
             "extrahosts": ("",), "securityopt": ("",), "isolation": ("", "default"), "outputs": ("", "null", "[]"),
             "session": ("",), "version": ("", "1")}
_FLAGS_OFF = ("pull", "squash")
#: fields that change nothing here (a build id names a build for cancelling it)
_IGNORED = ("buildid",)
_KNOWN = {"t", "dockerfile", "buildargs", "nocache", "target", "labels", "rm", "forcerm", "q", "networkmode",
          "remote", "platform", *_DEFAULTS, *_FLAGS_OFF, *_IGNORED}
_RED, _RESET = "\x1b[91m", "\x1b[0m"


def _message(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


class _JsonStream:
    """The build's output as Docker's JSON messages; the response starts with the first of them (or, with
    `q`, is held back and sent only if the build fails)."""

    def __init__(self, h: Handler, quiet: bool) -> None:
        self.h = h
        self.quiet = quiet
        self.held: list[bytes] = []
        self.writer: ChunkedWriter | None = None
        self.stdout = _Sink(self, False)
        self.stderr = _Sink(self, True)

    def send(self, obj: dict[str, Any], always: bool = False) -> None:
        data = _message(obj)
        if self.quiet and not always:
            self.held.append(data)
            return
        if self.writer is None:
            self.writer = self.h.start_stream("application/json")
        self.writer.write(data)

    def line(self, text: str) -> None:
        self.send({"stream": text + "\n"})

    def image(self, image_id: str) -> None:
        self.send({"aux": {"ID": f"sha256:{image_id}"}})

    @property
    def started(self) -> bool:
        return self.writer is not None or bool(self.held)

    def fail(self, err: PydockError) -> None:
        """The error as the stream's last message (after the held output, with `q`)."""
        for data in self.held:
            self.send(json.loads(data), always=True)
        self.held.clear()
        detail: dict[str, Any] = {"message": str(err)}
        if isinstance(err, BuildFailed):
            detail["code"] = err.exit_code
        self.send({"errorDetail": detail, "error": str(err)}, always=True)

    def close(self) -> None:
        if self.writer is None:
            self.writer = self.h.start_stream("application/json")
        self.writer.close()


class _Sink:
    """RUN's stdout or stderr as `stream` messages (stderr in red, as dockerd sends it)."""

    def __init__(self, stream: _JsonStream, red: bool) -> None:
        self.stream = stream
        self.red = red

    def write(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        self.stream.send({"stream": f"{_RED}{text}{_RESET}" if self.red else text})

    def flush(self) -> None:
        """Each write is sent at once."""


def _json_map(req: Request, name: str) -> dict[str, Any]:
    text = req.arg(name)
    if not text or text == "null":
        return {}
    try:
        value = json.loads(text)
    except ValueError as err:
        raise InvalidArgument(f"error reading {name}: {err}") from None
    if not isinstance(value, dict) or not all(v is None or isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"error reading {name}: not a JSON object of strings")
    return value


def _options(req: Request, insecure_registries: tuple[str, ...] = ()) -> Any:
    """BuildOptions from the query; a field pydock's builder does not do is refused by name."""
    from pydock.runtime.builder.state import BuildOptions  # lazy: the builder, only for /build

    for name in req.query:
        if name not in _KNOWN:
            raise InvalidArgument(f"{name} is not supported by pydock's builder")
    for name, allowed in _DEFAULTS.items():
        for value in req.args(name):
            if value not in allowed:
                raise InvalidArgument(f"{name}={value} is not supported by pydock's builder"
                                      + (" (BuildKit is not available: it is the classic builder)"
                                         if name == "version" else ""))
    for name in _FLAGS_OFF:
        if req.flag(name):
            raise InvalidArgument(f"{name} is not supported by pydock's builder")
    if req.arg("remote"):
        raise InvalidArgument("remote is not supported: send the build context as a tar in the body")
    network = req.arg("networkmode") or "default"
    if network not in ("default", "bridge", "none"):
        raise InvalidArgument(f"networkmode={network} is not supported (default, bridge or none)")
    platform = req.arg("platform")
    if platform:
        from pydock.graph.distribution import manifest  # lazy: the platform names, only with platform=

        host = "/".join(p for p in manifest.host_platform() if p)
        if platform not in (host, host.split("/", 1)[0]):
            raise InvalidArgument(f"platform {platform} is not supported: only {host} can be built here")
    force_rm = req.flag("forcerm")
    return BuildOptions(tags=tuple(decode.strip_registry(t) for t in req.args("t") if t),
                        build_args=_json_map(req, "buildargs"), no_cache=req.flag("nocache"),
                        target=req.arg("target") or None, labels=_json_map(req, "labels"),
                        remove=force_rm or req.flag("rm", True), force_remove=force_rm, network=network != "none",
                        insecure_registries=insecure_registries)


def build(svc: Services, req: Request, h: Handler) -> None:
    from pydock.graph.scratch import scratch_dir  # lazy: the builder, only for /build
    from pydock.runtime.builder.builder import build as run_build, check_tags  # lazy: the builder
    from pydock.runtime.builder.context import BuildContext  # lazy: the builder

    options = _options(req, svc.insecure_registries)
    check_tags(options.tags)
    quiet = bool_value(req.arg("q"))
    with svc.pool.runtime() as rt, scratch_dir(rt.layout.graph_tmp) as scratch:
        try:
            context = BuildContext.from_tar(req.body, scratch, req.arg("dockerfile") or None)  # type: ignore[arg-type]
        except PydockError:
            h.close_connection = not req.body.done  # the rest of a bad body is not worth reading
            raise
        out = _JsonStream(h, quiet)
        try:
            image_id = run_build(rt, context, options, out)
        except PydockError as err:
            if not out.started:
                raise  # nothing said yet: an HTTP error, as dockerd answers
            out.fail(err)
            out.close()
            return
    if quiet:
        out.send({"stream": f"sha256:{image_id}\n"}, always=True)
    out.close()


ROUTES = [
    ("POST", r"/build", build),
]
