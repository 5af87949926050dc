"""What the graph knows of each image's layer beyond Docker 0.7's json: `graph/<id>/layer.json`.

A layer image records its diff id (sha256 of its uncompressed tar), its chain id (the whole stack up to
it, so shared layers are found and stored once) and the compressed blobs it is known under (digest,
media type, size and the repositories that have it: a push skips those, a save may reuse them). An
image that only carries a config (pulled or loaded: its id is the config's digest) has an empty layer:
no diff id, the chain id of its parent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pydock.graph.digest import is_digest
from pydock.utils.errors import StorageError

LAYER_FILE = "layer.json"
SPLIT_FILE = "tar-split.gz"
CONFIG_FILE = "config.json"
REPO_DIGESTS_FILE = "repodigests.json"


@dataclass(frozen=True)
class Blob:
    """A compressed form of a layer as some registry or archive holds it."""

    media_type: str
    size: int
    repos: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerInfo:
    """Layer identity of one graph image (see the module docstring)."""

    diff_id: str | None
    chain_id: str | None
    tar_size: int = 0
    empty: bool = False
    reproducible: bool = True
    blobs: dict[str, Blob] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["blobs"] = {d: {"media_type": b.media_type, "size": b.size, "repos": list(b.repos)}
                         for d, b in self.blobs.items()}
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> LayerInfo:
        try:
            data = json.loads(raw)
            blobs = {str(d): Blob(str(b["media_type"]), int(b["size"]), tuple(str(r) for r in b.get("repos", ())))
                     for d, b in (data.get("blobs") or {}).items()}
            info = cls(diff_id=data.get("diff_id"), chain_id=data.get("chain_id"),
                       tar_size=int(data.get("tar_size") or 0), empty=bool(data.get("empty")),
                       reproducible=bool(data.get("reproducible", True)), blobs=blobs)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise StorageError(f"Corrupt layer record {where}: {err}") from None
        for digest in (info.diff_id, info.chain_id, *info.blobs):
            if digest is not None and not is_digest(digest):
                raise StorageError(f"Corrupt layer record {where}: bad digest {digest!r}")
        return info

    def with_blob(self, digest: str, media_type: str, size: int, repo: str | None) -> LayerInfo:
        """This record, knowing that `digest` (compressed) holds the layer, in `repo` when given."""
        old = self.blobs.get(digest)
        repos = set(old.repos if old else ())
        if repo:
            repos.add(repo)
        blobs = dict(self.blobs)
        blobs[digest] = Blob(media_type, size, tuple(sorted(repos)))
        return replace(self, blobs=blobs)
