"""The Qdrant backend: the index in a Qdrant collection, for corpora that outgrow one machine.

Layout. One collection per full build (first build, ``--full``, ``migrate``),
named ``<alias>-<time>-<random>``; the alias (``qdrant_collection``) names the
current one and switching it is the atomic commit. Each point is a passage,
under a stable id (its document, text and occurrence), carrying a dense vector
(``dense``), its sentence vectors as a MaxSim multivector (``sentences``), a
sparse vector of its BM25 term weights without idf, made by the project's own
Norwegian analysis (``lexical``, with the server's IDF modifier), and the
passage as payload with indexes on source, meeting kind and date. What a
question needs besides (manifest, vocabulary, background vectors) is side data
stored as vector-less points of the same collection.

Incremental builds change the current collection in place: they upsert the
passages of added and changed documents and delete removed ones by their ids.
Every point carries the revision that added it (and, once removed, the one
that removed it); searches see only points of their own revision, and the
small "head" point naming the revision is written last, so a search sees the
whole old revision or the whole new one, and an interrupted build leaves the
old one answering (its leftovers are cleared by the next build).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from qdrant_client import models as qm

from ..bm25 import LexicalIndex, saturated_tf
from ...ingest.chunking import Chunk, text_key
from ...ingest.lexical import analyze
from ...ingest.meetings import Meeting
from ...settings import Settings
from ..store import FIX, Manifest, StoreError, build_lock, list_members
from .qdrant_connection import connect, errors, label, scroll, visible

HEAD = 1  # the point naming the committed revision and its side data; passages never get ids below 16
PART_CHARS = 4_000_000  # side data is cut into payloads of this many characters
BATCH = 128
SIDE_FORMAT = 1
PAYLOAD_INDEXES = {
    "source": qm.PayloadSchemaType.KEYWORD,
    "meeting_kind": qm.PayloadSchemaType.KEYWORD,
    "day": qm.PayloadSchemaType.INTEGER,
    "added": qm.PayloadSchemaType.INTEGER,
    "removed": qm.PayloadSchemaType.INTEGER,
    "text_key": qm.PayloadSchemaType.KEYWORD,
}

def point_id(*parts: str) -> int:
    """A stable 63-bit id: the same passage gets the same id in every build."""
    value = int.from_bytes(hashlib.blake2b("\0".join(parts).encode("utf-8"), digest_size=8).digest(), "big") >> 1
    return value if value >= 16 else value + 16


# The side data of the revision last read, per store: a committed revision's never changes (collection
# names are unique), so the status line, the viewer and a reload read the small head point only.
_SIDE: dict[str, tuple[str, int, dict[str, object]]] = {}


class QdrantBackend:
    name = "qdrant"
    keeps_unchanged = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alias = settings.qdrant_collection
        self.label = label(settings)
        self.client = connect(settings)

    # ---- reading ----

    def target(self) -> str | None:
        with errors(self.label):
            found = [a.collection_name for a in self.client.get_aliases().aliases if a.alias_name == self.alias]
        return found[0] if found else None

    def head(self, collection: str) -> dict[str, object]:
        with errors(self.label):
            records = self.client.retrieve(collection, [HEAD], with_payload=True)
        if not records:
            raise StoreError(f"The index in {self.label} is incomplete: no committed revision. {FIX}")
        return dict(records[0].payload or {})

    def current(self) -> str | None:
        collection = self.target()
        return None if collection is None else f"{collection}#{self.head(collection)['revision']}"

    def side_data(self) -> tuple[str, int, dict[str, object]]:
        collection = self.target()
        if collection is None:
            raise StoreError(f"No index found in {self.label}. {FIX}")
        head = self.head(collection)
        revision, parts = int(head["revision"]), int(head["parts"])  # type: ignore[arg-type]
        known = _SIDE.get(self.label)
        if known is not None and known[:2] == (collection, revision):
            return known
        if head.get("format") != SIDE_FORMAT:
            raise StoreError(f"The index in {self.label} has side data of format {head.get('format')}. {FIX}")
        with errors(self.label):
            records = self.client.retrieve(collection, [point_id("side", str(revision), str(i)) for i in range(parts)])
        pieces = {int(r.payload["part"]): str(r.payload["data"]) for r in records if r.payload}
        try:
            found = collection, revision, json.loads("".join(pieces[i] for i in range(parts)))
        except (KeyError, ValueError) as exc:
            raise StoreError(f"The side data in {self.label} is damaged ({exc}). {FIX}") from exc
        _SIDE[self.label] = found
        return found

    def manifest(self) -> Manifest:
        return Manifest.from_json(self.side_data()[2]["manifest"])  # type: ignore[arg-type]

    def load(self):  # -> QdrantGeneration
        from .qdrant_search import QdrantGeneration

        collection, revision, side = self.side_data()
        return QdrantGeneration(self.client, self.label, collection, revision, side, server=bool(self.settings.qdrant_url))

    def lock(self, on_wait: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """The build lock of the index folder: one build at a time from this machine (see docs/scaling.md)."""
        return build_lock(Path(self.settings.index), on_wait=on_wait)

    # ---- writing ----

    def save(
        self,
        manifest: Manifest,
        chunks: Sequence[Chunk],
        arrays: dict[str, np.ndarray],
        lexical: LexicalIndex,
        previous: object,
        fresh: frozenset[str],
    ) -> None:
        from .qdrant_search import QdrantGeneration

        manifest = dataclasses.replace(manifest, chunks=len(chunks), dense_index="qdrant", dim=arrays["vectors"].shape[1])
        with errors(self.label):
            if isinstance(previous, QdrantGeneration) and previous.collection == self.target():
                self._update(previous, manifest, chunks, arrays, lexical, fresh)
            else:
                self._create(manifest, chunks, arrays, lexical)

    def _create(self, manifest: Manifest, chunks: Sequence[Chunk], arrays: dict[str, np.ndarray], lexical: LexicalIndex) -> None:
        """A full build: a new collection, filled and committed, then the alias switched to it."""
        current = self.target()
        for stale in self._generations() - {current}:  # left by interrupted builds, or kept for searches in flight
            self.client.delete_collection(stale)
        name = f"{self.alias}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._make_collection(name, int(arrays["vectors"].shape[1]))
        counts = terms_of(chunks, range(len(chunks)))  # analysed once: for the mean length, then for the vectors
        avgdl = float(np.mean([sum(c.values()) for c in counts.values()])) if counts else 1.0
        side = {"term_ids": {t: i for i, t in enumerate(lexical.terms)}, "avgdl": avgdl or 1.0}
        self._upsert(name, manifest, chunks, counts, arrays, side, revision=1, added={})
        self._commit(name, 1, manifest, lexical, side, arrays["background"])
        operations: list[qm.AliasOperations] = [qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=name, alias_name=self.alias))]
        if current is not None:
            operations.insert(0, qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=self.alias)))
        self.client.update_collection_aliases(operations)

    def _update(self, previous, manifest: Manifest, chunks: Sequence[Chunk], arrays: dict[str, np.ndarray],
                lexical: LexicalIndex, fresh: frozenset[str]) -> None:
        """An incremental build in place: upsert the fresh documents' passages, delete the removed ones, commit."""
        name, old = previous.collection, previous.revision
        revision = old + 1
        self._clear_uncommitted(name, old)
        side = {"term_ids": dict(previous.side["term_ids"]), "avgdl": previous.side["avgdl"]}
        for term in lexical.terms:  # sparse ids of terms never change, so unchanged passages stay valid
            side["term_ids"].setdefault(term, len(side["term_ids"]))
        gone = set(previous.manifest.sources) - set(manifest.sources)
        before = self._points_of(name, old, sorted(fresh | gone))
        positions = [i for i, c in enumerate(chunks) if c.source in fresh]
        written = self._upsert(name, manifest, chunks, terms_of(chunks, positions), arrays, side, revision, before)
        removed = sorted(set(before) - written)
        for start in range(0, len(removed), 1000):
            self.client.set_payload(name, {"removed": revision}, points=removed[start : start + 1000], wait=True)
        self._commit(name, revision, manifest, lexical, side, arrays["background"])
        if removed:
            self.client.delete(name, points_selector=qm.PointIdsList(points=removed), wait=True)

    def _make_collection(self, name: str, dim: int) -> None:
        """The cluster layout of docs/scaling.md; local mode accepts and ignores what it cannot do (all but the vectors)."""
        settings = self.settings
        self.client.create_collection(
            name,
            vectors_config={
                # normalised vectors: DOT is the cosine, and the server must not renormalise them
                "dense": qm.VectorParams(size=dim, distance=qm.Distance.DOT, on_disk=True),
                "sentences": qm.VectorParams(  # only rescores candidates: no HNSW graph of its own
                    size=dim, distance=qm.Distance.DOT, on_disk=True, hnsw_config=qm.HnswConfigDiff(m=0),
                    multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
                ),
            },
            sparse_vectors_config={
                "lexical": qm.SparseVectorParams(modifier=qm.Modifier.IDF, index=qm.SparseIndexParams(on_disk=True))
            },
            quantization_config=qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99, always_ram=True)
            ),
            on_disk_payload=True,
            shard_number=settings.qdrant_shards,
            replication_factor=settings.qdrant_replicas,
        )
        if self.settings.qdrant_url:  # local mode has no payload indexes (it filters point by point)
            for field, schema in PAYLOAD_INDEXES.items():
                self.client.create_payload_index(name, field, schema, wait=True)

    def _generations(self) -> set[str]:
        """This alias's collections: never those of another alias that merely begins the same way."""
        name = re.compile(rf"{re.escape(self.alias)}-\d{{8}}T\d{{6}}-[0-9a-f]{{6}}")
        return {c.name for c in self.client.get_collections().collections if name.fullmatch(c.name)}

    def _points_of(self, name: str, revision: int, sources: Sequence[str]) -> dict[int, int]:
        """Ids of the visible passages of these documents, with the revision that added each."""
        found: dict[int, int] = {}
        must, must_not = visible(revision)
        for start in range(0, len(sources), 100):
            condition = qm.FieldCondition(key="source", match=qm.MatchAny(any=list(sources[start : start + 100])))
            query = qm.Filter(must=[*must, condition], must_not=must_not)
            for record in scroll(self.client, name, query, with_payload=["added"]):
                found[int(record.id)] = int(record.payload["added"])  # type: ignore[index]
        return found

    def _clear_uncommitted(self, name: str, revision: int) -> None:
        """What an interrupted build wrote after the last commit: its new points go, its removal marks too."""
        later = qm.FieldCondition(key="added", range=qm.Range(gt=revision))
        self.client.delete(name, points_selector=qm.FilterSelector(filter=qm.Filter(must=[later])), wait=True)
        marked = qm.Filter(must=[qm.FieldCondition(key="removed", range=qm.Range(gt=revision))])
        self.client.delete_payload(name, keys=["removed"], points=marked, wait=True)

    def _upsert(self, name: str, manifest: Manifest, chunks: Sequence[Chunk], counts: dict[int, Counter[str]],
                arrays: dict[str, np.ndarray], side: dict, revision: int, added: dict[int, int]) -> set[int]:
        """Write the passages at the positions ``counts`` holds the terms of (arrays hold their vectors in that
        order); returns their ids.

        A passage that already exists keeps the revision that added it, so
        searches of the committed revision go on seeing it.
        """
        ids = passage_ids(chunks)
        positions = list(counts)
        lists = {}
        by_source: dict[str, list[int]] = {}
        for i in positions:
            by_source.setdefault(chunks[i].source, []).append(i)
        for members in by_source.values():
            for position, run in list_members([chunks[i] for i in members]).items():
                lists[members[position]] = [ids[members[j]] for j in run]
        ordinals = {i: n for members in by_source.values() for n, i in enumerate(members)}
        offsets, sentences, vectors = arrays["sentence_offsets"], arrays["sentences"], arrays["vectors"]
        meetings = manifest.meeting_map()
        batch: list[qm.PointStruct] = []
        for row, i in enumerate(positions):
            chunk = chunks[i]
            payload = {
                "chunk": dataclasses.asdict(chunk), "source": chunk.source, "ordinal": ordinals[i],
                "text_key": text_key(chunk.embed_text), "added": added.get(ids[i], revision),
                **meeting_fields(meetings.get(chunk.source)),
            }
            if i in lists:
                payload["list"] = lists[i]
            vector = {
                "dense": vectors[row].tolist(),
                "sentences": sentences[offsets[row] : offsets[row + 1]].tolist(),
                "lexical": sparse_vector(counts[i], side),
            }
            batch.append(qm.PointStruct(id=ids[i], vector=vector, payload=payload))
            if len(batch) == BATCH:
                self.client.upsert(name, batch, wait=True)
                batch = []
        if batch:
            self.client.upsert(name, batch, wait=True)
        return {ids[i] for i in positions}

    def _commit(self, name: str, revision: int, manifest: Manifest, lexical: LexicalIndex, side: dict,
                background: np.ndarray) -> None:
        """Side data of the new revision first, then the head that names it: the commit."""
        text = json.dumps(
            {"manifest": dataclasses.asdict(manifest), "vocabulary": lexical.to_json(), **side,
             "background": np.asarray(background, np.float32).tolist()},
            ensure_ascii=False,
        )
        parts = [text[a : a + PART_CHARS] for a in range(0, len(text), PART_CHARS)] or [""]
        points = [
            qm.PointStruct(id=point_id("side", str(revision), str(i)), vector={}, payload={"side": revision, "part": i, "data": part})
            for i, part in enumerate(parts)
        ]
        self.client.upsert(name, points, wait=True)
        head = {"revision": revision, "parts": len(parts), "format": SIDE_FORMAT}
        self.client.upsert(name, [qm.PointStruct(id=HEAD, vector={}, payload=head)], wait=True)
        older = qm.Filter(must=[qm.FieldCondition(key="side", range=qm.Range(lt=revision - 1))])  # a reader may still want the last
        self.client.delete(name, points_selector=qm.FilterSelector(filter=older), wait=True)


def passage_ids(chunks: Sequence[Chunk]) -> list[int]:
    """Stable ids: a passage is its document, its text and how many times that text came before in it."""
    seen: Counter[tuple[str, str]] = Counter()
    ids = []
    for chunk in chunks:
        key = (chunk.source, text_key(chunk.embed_text))
        ids.append(point_id(chunk.source, key[1], str(seen[key])))
        seen[key] += 1
    return ids


def terms_of(chunks: Sequence[Chunk], positions: Sequence[int]) -> dict[int, Counter[str]]:
    """The analysed terms of the passages at ``positions``, counted: each passage is analysed once per build."""
    return {i: Counter(analyze(chunks[i].embed_text)) for i in positions}


def sparse_vector(counts: Counter[str], side: dict) -> qm.SparseVector:
    """BM25's term-frequency part with the generation's mean length; the server multiplies in the idf."""
    length = sum(counts.values())
    terms = sorted(counts, key=lambda t: side["term_ids"][t])
    return qm.SparseVector(
        indices=[side["term_ids"][t] for t in terms],
        values=[float(saturated_tf(counts[t], length, side["avgdl"])) for t in terms],
    )


def meeting_fields(meeting: Meeting | None) -> dict[str, object]:
    """What `where` filters on: the meeting's kind (case-folded) and its date as a day number."""
    fields: dict[str, object] = {"meeting_kind": (meeting.kind if meeting else "").casefold()}
    day = meeting.day if meeting else None
    if day is not None:
        fields["day"] = day.toordinal()
    return fields
