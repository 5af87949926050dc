"""Routes for what pydock records and measures: `/events` (the root's journal, past then streamed),
`/containers/{id}/stats` (one reading or a stream, Docker's fields), pause, unpause and rename."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pydock.runtime import events as journal
from pydock.runtime.api import decode
from pydock.runtime.api.httpd import Handler, Request
from pydock.runtime.api.services import Services
from pydock.utils.errors import InvalidArgument

log = logging.getLogger(__package__)

#: how often a stats stream reads the counters (dockerd's interval)
STATS_INTERVAL = 1.0


def _event_json(e: journal.Event) -> dict[str, Any]:
    out = {**e.to_json(), "time": e.time_ns // 10**9, "timeNano": e.time_ns, "scope": "local"}
    if e.type == "container":  # the fields of API < 1.22, still read by older clients
        out.update(status=e.action, id=e.actor, **({"from": e.attributes["image"]} if "image" in e.attributes else {}))
    return out


def events(svc: Services, req: Request, h: Handler) -> None:
    since = decode.timestamp(req.arg("since"))
    until = decode.timestamp(req.arg("until"))
    wanted: dict[str, set[str]] = {}
    for key, values in decode.filters(req.arg("filters")).items():
        if key not in journal.FILTER_KEYS:
            raise InvalidArgument(f"Invalid filter '{key}'")
        wanted[key] = set(values)
    since_ns = int(since * 10**9) if since is not None else None
    until_ns = int(until * 10**9) if until is not None else None
    with svc.pool.runtime() as rt:
        root = rt.layout.root
    past, offset = journal.read(root, since_ns, until_ns, wanted)
    out = h.start_stream("application/json")
    try:
        if since_ns is not None:
            for e in past:
                out.write(json.dumps(_event_json(e)).encode() + b"\n")
        if until_ns is None or until_ns > time.time_ns():
            for e in journal.follow(root, offset, wanted, until_ns, stop=h.client_gone):
                out.write(json.dumps(_event_json(e)).encode() + b"\n")
    except (BrokenPipeError, ConnectionResetError) as err:
        log.debug("events client gone: %s", err)
        return
    out.close()


def _stats_json(c: Any, name: str, now: Any, prev: Any) -> dict[str, Any]:
    def cpu(s: Any) -> dict[str, Any]:
        if s is None:
            return {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0}
        return {"cpu_usage": {"total_usage": s.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "system_cpu_usage": s.system_ns, "online_cpus": s.online_cpus, "throttling_data": {}}

    return {
        "id": c.id, "name": name, "read": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "preread": "0001-01-01T00:00:00Z", "num_procs": 0, "pids_stats": {"current": now.pids},
        "cpu_stats": cpu(now), "precpu_stats": cpu(prev),
        "memory_stats": {"usage": now.mem_usage, "limit": now.mem_limit, "stats": {}},
        "networks": {"eth0": {"rx_bytes": now.net_rx, "tx_bytes": now.net_tx, "rx_packets": 0, "tx_packets": 0,
                              "rx_errors": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": now.blk_read},
            {"major": 0, "minor": 0, "op": "write", "value": now.blk_write}]},
        "storage_stats": {},
    }


def stats(svc: Services, req: Request, h: Handler, name: str) -> None:
    stream = req.flag("stream", True) and not req.flag("one-shot")
    with svc.pool.runtime() as rt:
        c = rt.get(name)
        label = "/" + (rt.names_of(c) or [c.name or c.short_id])[0].lstrip("/")
        prev = None if req.flag("one-shot") else rt.stats(c)
        if not stream:
            if prev is not None:
                time.sleep(STATS_INTERVAL)  # precpu: the reading a second before, as dockerd gives it
            h.send_json(200, _stats_json(c, label, rt.stats(c), prev))
            return
        out = h.start_stream("application/json")
        try:
            while not h.client_gone():
                time.sleep(STATS_INTERVAL)
                try:
                    now = rt.stats(c.id)
                except Exception as err:  # noqa: BLE001 - it stopped: the stream ends, as dockerd's
                    log.debug("stats of %s end: %s", c.short_id, err)
                    break
                out.write(json.dumps(_stats_json(c, label, now, prev)).encode() + b"\n")
                prev = now
        except (BrokenPipeError, ConnectionResetError) as err:
            log.debug("stats client gone: %s", err)
            return
        out.close()


def pause(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        rt.pause(rt.get(name))
    h.send_empty(204)


def unpause(svc: Services, req: Request, h: Handler, name: str) -> None:
    with svc.pool.runtime() as rt:
        rt.unpause(rt.get(name))
    h.send_empty(204)


def rename(svc: Services, req: Request, h: Handler, name: str) -> None:
    new = req.arg("name")
    if not new:
        raise InvalidArgument("rename: the query parameter 'name' is required")
    with svc.pool.runtime() as rt:
        rt.rename(rt.get(name), new)
    h.send_empty(204)


ROUTES = [
    ("GET", r"/events", events),
    ("GET", r"/containers/(?P<name>[^/]+)/stats", stats),
    ("POST", r"/containers/(?P<name>[^/]+)/pause", pause),
    ("POST", r"/containers/(?P<name>[^/]+)/unpause", unpause),
    ("POST", r"/containers/(?P<name>[^/]+)/rename", rename),
]
