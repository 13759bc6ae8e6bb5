"""Searching one revision of the Qdrant backend: candidates from prefetches, evidence scored on the server.

A question costs two round trips. The first gathers candidates: prefetches
for dense search (also inside the named documents) and sparse BM25 search, each
with the ``where`` filter, fused by RRF only to return their union. The second
scores exactly those candidates on each signal the ranker weighs: the dense
cosine, the best sentence (MaxSim over the sentence multivector) and BM25 (the
server's idf times the stored term weights). The lexical share is computed here
from that score and the vocabulary's idf, as the local backend computes it, so
both rank the same candidates the same way; ranking stays in ``retrieval.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from ..bm25 import Vocabulary
from ...ingest.chunking import Chunk
from ..filters import Where
from ...ingest.meetings import place_names
from ..store import Manifest, StoreError
from . import Evidence
from .qdrant_connection import errors, scroll, visible

# Candidates come from the int8 quantised HNSW index, rescored from the full vectors; the evidence
# of those few candidates is computed exactly. Local mode is always exact and warns about them.
CANDIDATES = qm.SearchParams(quantization=qm.QuantizationSearchParams(rescore=True, oversampling=2.0))
EXACT = qm.SearchParams(exact=True)


class QdrantGeneration:
    """One committed revision of one collection: what retrieval's Generation protocol asks for."""

    def __init__(self, client: QdrantClient, label: str, collection: str, revision: int, side: dict, server: bool) -> None:
        self.client = client
        self._candidates, self._exact = (CANDIDATES, EXACT) if server else (None, None)  # local mode is exact anyway
        self.label = label
        self.collection = collection
        self.revision = revision
        self.side = side
        self.key = f"{collection}#{revision}"
        try:
            self.manifest = Manifest.from_json(side["manifest"])
            self.lexical = Vocabulary.from_json(side["vocabulary"])
            self.background = np.asarray(side["background"], dtype=np.float32).reshape(-1, self.manifest.dim)
            term_ids = side["term_ids"]
            self._sparse_ids = np.array([term_ids[t] for t in self.lexical.terms], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"The side data in {label} is damaged ({exc!r}).") from exc
        self.meetings = self.manifest.meeting_map()
        self.places = place_names(self.meetings.values())
        self._documents: dict[str, list[Chunk]] | None = None

    def __len__(self) -> int:
        return self.manifest.chunks

    def evidence(self, qvec: np.ndarray, lex_query: str, named: frozenset[str], where: Where, k: int) -> Evidence:
        dense = qvec.astype(np.float32).tolist()
        prefetch = [qm.Prefetch(query=dense, using="dense", filter=self._filter(where), limit=k, params=self._candidates)]
        if named:
            prefetch.append(qm.Prefetch(query=dense, using="dense", filter=self._filter(where, named), limit=k, params=self._candidates))
        columns, coefficients, attainable = self.lexical.weighted_query(lex_query)
        sparse = qm.SparseVector(indices=self._sparse_ids[columns].tolist(), values=coefficients.tolist()) if len(columns) else None
        if sparse is not None:
            prefetch.append(qm.Prefetch(query=sparse, using="lexical", filter=self._filter(where), limit=k))
        with errors(self.label):
            union = self.client.query_points(
                self.collection, prefetch=prefetch, query=qm.FusionQuery(fusion=qm.Fusion.RRF), limit=k * len(prefetch)
            ).points
            ids = [int(p.id) for p in union]
            if not ids:
                return Evidence(np.zeros(0, np.int64), *(np.zeros(0, np.float32),) * 3, [])
            only = qm.Filter(must=[qm.HasIdCondition(has_id=ids)])
            requests = [
                qm.QueryRequest(query=dense, using="dense", filter=only, limit=len(ids), params=self._exact,
                                with_payload=["source", "ordinal"]),
                qm.QueryRequest(query=[dense], using="sentences", filter=only, limit=len(ids), params=self._exact),
            ]
            if sparse is not None:
                requests.append(qm.QueryRequest(query=sparse, using="lexical", filter=only, limit=len(ids), params=self._exact))
            scored = self.client.query_batch_points(self.collection, requests)
        passages = {int(p.id): p for p in scored[0].points}
        order = sorted(passages, key=lambda i: (passages[i].payload["source"], passages[i].payload["ordinal"]))  # type: ignore[index]
        best = {int(p.id): p.score for p in scored[1].points}
        lexical = {int(p.id): p.score for p in scored[2].points} if sparse is not None else {}
        return Evidence(
            ids=np.array(order, dtype=np.int64),
            passage=np.array([passages[i].score for i in order], dtype=np.float32),
            sentence=np.array([best[i] for i in order], dtype=np.float32),
            lexical=np.minimum(np.array([lexical.get(i, 0.0) for i in order], dtype=np.float64) / attainable, 1.0).astype(np.float32),
            sources=[str(passages[i].payload["source"]) for i in order],  # type: ignore[index]
        )

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        records = self._retrieve(ids, with_vectors=["dense", "sentences"])
        passages = np.array([records[i].vector["dense"] for i in ids], dtype=np.float32).reshape(len(ids), -1)  # type: ignore[index]
        return passages, [np.array(records[i].vector["sentences"], dtype=np.float32) for i in ids]  # type: ignore[index]

    def chunks_at(self, ids: Sequence[int]) -> list[Chunk]:
        records = self._retrieve(ids, with_payload=["chunk"])
        return [Chunk(**records[i].payload["chunk"]) for i in ids]  # type: ignore[index]

    def list_of(self, chunk_id: int) -> tuple[int, ...]:
        record = self._retrieve([chunk_id], with_payload=["list"])[chunk_id]
        return tuple(int(i) for i in (record.payload or {}).get("list", ()))

    def document_chunks(self, source: str) -> list[Chunk]:
        """Read once for all documents: a build asks for every unchanged one."""
        if self._documents is None:
            ordered: dict[str, list[tuple[int, Chunk]]] = {}
            with errors(self.label):
                for record in scroll(self.client, self.collection, self._filter(Where()), with_payload=["chunk", "ordinal"]):
                    chunk = Chunk(**record.payload["chunk"])  # type: ignore[index]
                    ordered.setdefault(chunk.source, []).append((int(record.payload["ordinal"]), chunk))  # type: ignore[index]
            self._documents = {s: [c for _, c in sorted(pairs, key=lambda pair: pair[0])] for s, pairs in ordered.items()}
        return self._documents.get(source, [])

    def embedded(self, keys: Sequence[str]) -> Iterator[tuple[Chunk, np.ndarray, np.ndarray]]:
        """Only the passages whose texts a build needs, found by their text key: never the whole collection."""
        wanted = sorted(set(keys))
        for start in range(0, len(wanted), 500):
            condition = qm.FieldCondition(key="text_key", match=qm.MatchAny(any=wanted[start : start + 500]))
            must, must_not = visible(self.revision)
            with errors(self.label):
                found = list(scroll(self.client, self.collection, qm.Filter(must=[*must, condition], must_not=must_not),
                                    with_payload=["chunk"], with_vectors=["dense", "sentences"]))
            for record in found:
                vector = record.vector
                yield (Chunk(**record.payload["chunk"]), np.asarray(vector["dense"], np.float32),  # type: ignore[index]
                       np.asarray(vector["sentences"], np.float32))  # type: ignore[index]

    def _filter(self, where: Where, sources: frozenset[str] | None = None) -> qm.Filter:
        """This revision's passages that ``where`` admits (and of ``sources`` when given)."""
        must, must_not = visible(self.revision)
        if where.source is not None:
            must.append(qm.FieldCondition(key="source", match=qm.MatchValue(value=where.source)))
        if sources is not None:
            must.append(qm.FieldCondition(key="source", match=qm.MatchAny(any=sorted(sources))))
        if where.kind is not None:
            must.append(qm.FieldCondition(key="meeting_kind", match=qm.MatchValue(value=where.kind.casefold())))
        if where.after is not None or where.before is not None:
            days = qm.Range(gte=where.after.toordinal() if where.after else None,
                            lte=where.before.toordinal() if where.before else None)
            must.append(qm.FieldCondition(key="day", range=days))
        return qm.Filter(must=must, must_not=must_not)

    def _retrieve(self, ids: Sequence[int], **kwargs: object) -> dict[int, qm.Record]:
        with errors(self.label):
            records = {int(r.id): r for r in self.client.retrieve(self.collection, list(ids), **kwargs)}
        missing = [i for i in ids if i not in records]
        if missing:
            raise StoreError(f"{self.label}: passages {missing[:5]} are gone; a build replaced them. Ask again.")
        return records
