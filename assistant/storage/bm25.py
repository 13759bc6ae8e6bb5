"""BM25 over the analysed terms of the passages, and the question side of it (``Vocabulary``).

Scores are divided by what the question could attain at most (the sum of its
terms' idf), so a passage that shares only a frequent word with a long question
gets little lexical weight, and a question whose words the texts never use gets
little everywhere.
"""

from __future__ import annotations

import re

import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
from scipy import sparse

from ..ingest.lexical import QUESTION_FRAME, STOP_WORDS, analyze, forms_by_lemma, is_dictionary_word, is_lemma, lemma, split_compound, stem, surface_tokens, term

FORMAT_VERSION = 2
MATRIX_FILE = "lexical.npz"
VOCAB_FILE = "lexical_vocab.json"
K1 = 1.2
B = 0.75


def bm25_weights(tf: sparse.csr_matrix, k1: float, b: float) -> sparse.csc_matrix:
    """Precompute per-posting BM25 so a query is only a sum of column slices."""
    n_docs = tf.shape[0]
    doc_len = np.asarray(tf.sum(axis=1)).ravel()
    avg_len = float(doc_len.mean()) if n_docs else 0.0
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    rows = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
    data = idf(df, n_docs)[tf.indices] * saturated_tf(tf.data, doc_len[rows], avg_len, k1, b)
    weights = sparse.csr_matrix((data.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape)
    return weights.tocsc()


def saturated_tf(tf: np.ndarray | float, length: np.ndarray | float, avg_len: float, k1: float = K1, b: float = B) -> np.ndarray | float:
    """BM25's term-frequency part: repeats count less and less, and a long passage's words count less."""
    return tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * length / (avg_len or 1.0)))


def idf(df: np.ndarray | int, n_docs: int) -> np.ndarray:
    """Lucene's BM25 idf: never negative, so very common terms still count a little."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


class Vocabulary:
    """The question side of BM25: how the build analysed words, and each term's document frequency.

    It is all a question needs to be analysed, expanded into compounds and
    weighed, without the passages' postings; the Qdrant backend keeps the
    postings on the server and only this in the application.
    """

    def __init__(
        self,
        terms: list[str],
        df: np.ndarray,
        n_docs: int,
        compounds: Mapping[str, Sequence[int]],
        forms: Mapping[str, str],
        compound_weight: float = 0.5,
        max_expansions: int = 256,
    ) -> None:
        self._terms = terms
        self._ids = {term: i for i, term in enumerate(terms)}
        self._df = np.asarray(df, dtype=np.int64)
        self._n_docs = int(n_docs)
        self._compounds = {part: np.asarray(ids, dtype=np.int64) for part, ids in compounds.items()}
        self._forms = dict(forms)
        self.compound_weight = compound_weight
        self.max_expansions = max_expansions

    def __len__(self) -> int:
        return self._n_docs

    @property
    def terms(self) -> list[str]:
        """Term ids are positions in this sorted list."""
        return self._terms

    def term(self, word: str) -> str:
        """A question word as the build analysed it, without the dictionaries: irregular forms are listed."""
        return self._forms.get(word) or stem(word)

    def analyze(self, text: str) -> list[str]:
        return analyze(text, self.term)

    def weighted_query(self, query: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Term ids and coefficients of the question, and its attainable score (what shares divide by)."""
        terms = list(dict.fromkeys(self.analyze(query)))
        columns, coefficients = self._query_vector(terms)
        return columns, coefficients, self._attainable(terms)

    def query_terms(self, query: str) -> list[str]:
        """Analysed question terms the index can match, whole or as a compound part.

        An unknown question compound appears as the parts it was split into.
        """
        return list(dict.fromkeys(part for term in self.analyze(query) for part in self._parts(term)))

    def coverage(self, query: str) -> float:
        """Idf-weighted share of the question's words that the texts contain.

        A word found only as a compound part, or only through its split, counts
        half. A question about a topic the texts never mention ("bompenger")
        scores low even when its frame words ("KS", "kommune") are everywhere.
        """
        terms = list(dict.fromkeys(self.analyze(query)))
        if not terms or not len(self):
            return 0.0
        found = 0.0
        for term in terms:
            weight = self._idf(term)
            column = self._ids.get(term)
            found += weight if column is not None else 0.5 * weight if self._parts(term) else 0.0
        return found / self._attainable(terms)

    def missing(self, query: str) -> list[str]:
        """The question's content words, as it spells them, that the texts never use as words of their own
        (a word found only inside a compound, "sykehus" in "sykehusstruktur", is not what was asked)."""
        words = []
        for word in re.findall(r"\w[\w-]*", query):
            terms = self.analyze(word)
            if terms and word.casefold() not in QUESTION_FRAME and all(term not in self._ids for term in terms):
                words.append(word)
        return list(dict.fromkeys(words))

    def _idf(self, term: str) -> float:
        column = self._ids.get(term)
        return float(idf(self._df[column] if column is not None else 0, len(self)))

    def _attainable(self, terms: Iterable[str]) -> float:
        """What a passage holding every question term once would score: the sum of their idf."""
        return sum(self._idf(t) for t in terms) or 1.0

    def _query_vector(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Column ids and coefficients: whole terms 1, compound matches at most compound_weight."""
        weights: dict[int, float] = {}
        for term in terms:
            parts = self._parts(term)
            factor = 1.0 if parts == [term] else self.compound_weight
            for part in parts:
                for column, coefficient in self._term_weights(part):
                    weights[column] = weights.get(column, 0.0) + factor * coefficient
        columns = np.fromiter(weights, dtype=np.int64, count=len(weights))
        return columns, np.fromiter(weights.values(), dtype=np.float32, count=len(weights))

    def _matchable(self, term: str) -> bool:
        return term in self._ids or term in self._compounds

    def _parts(self, term: str) -> list[str]:
        """The term itself if the index can match it, else its split into matchable words, else nothing."""
        return [term] if self._matchable(term) else split_compound(term, self._matchable)

    def _term_weights(self, term: str) -> list[tuple[int, float]]:
        """The term's own column at 1, plus the compounds it is a part of."""
        whole = self._ids.get(term)
        own = [(whole, 1.0)] if whole is not None else []
        return own + self._partial_weights(term, whole)

    def _partial_weights(self, term: str, whole: int | None) -> list[tuple[int, float]]:
        """Scale each compound's column to the part's idf, so a part never beats the whole word.

        A rare compound has a higher idf than its common part; without rescaling a
        query for "tilskudd" would prefer "rammetilskudd" over "tilskudd" itself.
        The most frequent max_expansions compounds are kept, so a common part
        cannot turn one question into thousands of column slices.
        """
        columns = self._compounds.get(term)
        if columns is None or not len(columns) or self.compound_weight <= 0:
            return []
        if len(columns) > self.max_expansions:
            columns = columns[np.argsort(-self._df[columns], kind="stable")[: self.max_expansions]]
        n_docs = len(self)
        df = min(n_docs, int(self._df[columns].sum()) + (int(self._df[whole]) if whole is not None else 0))
        coefficients = self.compound_weight * idf(df, n_docs) / idf(self._df[columns], n_docs)
        return list(zip(columns.tolist(), coefficients.tolist()))

    def to_json(self) -> dict[str, object]:
        """Plain data, so another store (the Qdrant backend's side data) can keep it."""
        parts = sorted(self._compounds)
        return {
            "format_version": FORMAT_VERSION, "terms": self._terms, "df": self._df.tolist(), "n_docs": self._n_docs,
            "compounds": {p: self._compounds[p].tolist() for p in parts}, "forms": self._forms,
            "compound_weight": self.compound_weight, "max_expansions": self.max_expansions,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Vocabulary:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"vocabulary of format {data.get('format_version')}, expected {FORMAT_VERSION}")
        return Vocabulary(
            list(data["terms"]), np.asarray(data["df"], np.int64), int(data["n_docs"]),  # type: ignore[arg-type]
            data["compounds"], data["forms"],  # type: ignore[arg-type]
            float(data["compound_weight"]), int(data["max_expansions"]),  # type: ignore[arg-type]
        )


class LexicalIndex(Vocabulary):
    """BM25 over a docs x terms CSC matrix; term ids are the sorted vocabulary order.

    Besides the matrix it keeps what the question side needs to analyse words as
    the build did without loading the dictionaries: the inflected forms of its
    terms, and for each compound part the terms it is a part of.
    """

    def __init__(
        self,
        weights: sparse.csc_matrix,
        terms: list[str],
        compounds: Mapping[str, Sequence[int]],
        forms: Mapping[str, str],
        compound_weight: float = 0.5,
        max_expansions: int = 256,
    ) -> None:
        super().__init__(terms, np.diff(weights.indptr), weights.shape[0], compounds, forms, compound_weight, max_expansions)
        self._weights = weights

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        k1: float = K1,
        b: float = B,
        compound_weight: float = 0.5,
        max_expansions: int = 256,
    ) -> LexicalIndex:
        """One passage per text; its position is its id."""
        surface_ids: dict[str, int] = {}
        doc_tokens = [[surface_ids.setdefault(t, len(surface_ids)) for t in surface_tokens(x)] for x in texts]
        lemmas = {s: lemma(s) for s in surface_ids}
        words = {found for found in lemmas.values() if found not in STOP_WORDS}
        term_of = {found: stem(found) for found in words}
        terms = sorted(set(term_of.values()))
        column = {t: i for i, t in enumerate(terms)}
        surface_column = np.fromiter(
            (column[term_of[f]] if f in term_of else -1 for f in lemmas.values()), dtype=np.int64, count=len(lemmas)
        )
        rows, columns = [], []
        for row, tokens in enumerate(doc_tokens):
            found = surface_column[np.asarray(tokens, dtype=np.int64)]
            found = found[found >= 0]
            rows.append(np.full(len(found), row, dtype=np.int64))
            columns.append(found)
        tf = sparse.csr_matrix(
            (np.ones(sum(map(len, rows)), dtype=np.float32), (np.concatenate([[], *rows]), np.concatenate([[], *columns]))),
            shape=(len(texts), len(terms)),
        )
        tf.sum_duplicates()
        compounds: dict[str, list[int]] = {}
        is_word = lambda w: w in words or is_lemma(w)  # noqa: E731
        is_head = lambda w: is_word(w) or is_dictionary_word(w)  # noqa: E731
        for found in sorted(words):
            for part in dict.fromkeys(stem(p) for p in split_compound(found, is_word, is_head)):
                compounds.setdefault(part, []).append(column[term_of[found]])
        matchable = set(terms) | set(compounds)
        by_lemma = forms_by_lemma()
        forms = {}
        for found in sorted(words):
            for form in by_lemma.get(found, ()):
                wanted = term(form)
                if wanted in matchable and wanted != stem(form):
                    forms[form] = wanted
        return cls(bm25_weights(tf, k1, b), terms, compounds, forms, compound_weight, max_expansions)

    def score_all(self, query: str) -> np.ndarray:
        """Per passage, the share of the question's attainable score that it reaches (0..1)."""
        columns, coefficients, attainable = self.weighted_query(query)
        if not len(columns):
            return np.zeros(len(self), dtype=np.float32)
        scores = np.asarray(self._weights[:, columns] @ coefficients, dtype=np.float32).ravel()
        return np.minimum(scores / attainable, 1.0).astype(np.float32)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best k passages with a positive score, best first."""
        scores = self.score_all(query)
        hits = np.flatnonzero(scores > 0)
        if k <= 0:
            hits = hits[:0]
        elif k < len(hits):
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        order = np.lexsort((hits, -scores[hits]))
        ids = hits[order].astype(np.int64)
        return ids, scores[ids]

    def save(self, folder: Path) -> None:
        """Plain npz + JSON so the index loads without pickle and diffs as data."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        w = self._weights
        parts = sorted(self._compounds)
        offsets = np.cumsum([0, *(len(self._compounds[p]) for p in parts)]).astype(np.int64)
        members = np.concatenate([self._compounds[p] for p in parts]) if parts else np.zeros(0, np.int64)
        np.savez(
            folder / MATRIX_FILE,
            format_version=np.int64(FORMAT_VERSION),
            shape=np.asarray(w.shape, dtype=np.int64),
            data=w.data,
            indices=w.indices,
            indptr=w.indptr,
            compound_offsets=offsets,
            compound_members=members.astype(np.int64),
            compound_weight=np.float64(self.compound_weight),
            max_expansions=np.int64(self.max_expansions),
        )
        vocab = {"format_version": FORMAT_VERSION, "terms": self._terms, "parts": parts, "forms": self._forms}
        (folder / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        """Refuse missing, corrupt or foreign-version files with the file's name."""
        folder = Path(folder)
        arrays = _read_npz(folder / MATRIX_FILE)
        terms, parts, forms = _read_vocab(folder / VOCAB_FILE)
        shape = tuple(int(n) for n in arrays["shape"])
        offsets, members = arrays["compound_offsets"], arrays["compound_members"]
        if (
            len(shape) != 2 or shape[1] != len(terms) or len(offsets) != len(parts) + 1
            or (len(offsets) and offsets[-1] != len(members))
            or (len(members) and (members.min() < 0 or members.max() >= len(terms)))
        ):
            raise ValueError(f"{folder / MATRIX_FILE} does not match {folder / VOCAB_FILE}")
        try:
            weights = sparse.csc_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
            weights.check_format(full_check=True)
        except ValueError as err:
            raise ValueError(f"{folder / MATRIX_FILE} holds a broken matrix: {err}") from err
        compounds = {part: members[offsets[i] : offsets[i + 1]] for i, part in enumerate(parts)}
        return cls(
            weights, terms, compounds, forms, float(arrays["compound_weight"]), int(arrays["max_expansions"])
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"lexical index file missing: {path}")
    needed = (
        "format_version", "shape", "data", "indices", "indptr",
        "compound_offsets", "compound_members", "compound_weight", "max_expansions",
    )
    try:
        with np.load(path, allow_pickle=False) as npz:
            if int(npz["format_version"]) != FORMAT_VERSION:
                raise ValueError(f"format version {int(npz['format_version'])}, expected {FORMAT_VERSION}")
            arrays = {name: npz[name] for name in needed}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"lexical index file is corrupt or of another version: {path} ({err})") from err
    return arrays


def _read_vocab(path: Path) -> tuple[list[str], list[str], dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"lexical vocabulary file missing: {path}")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
        version, terms, parts, forms = vocab["format_version"], vocab["terms"], vocab["parts"], vocab["forms"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"lexical vocabulary file is corrupt: {path} ({err})") from err
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}, expected {FORMAT_VERSION}")
    strings = chain(terms if isinstance(terms, list) else [None], parts if isinstance(parts, list) else [None])
    if not all(isinstance(t, str) for t in strings) or not isinstance(forms, dict):
        raise ValueError(f"lexical vocabulary file is corrupt: {path} (terms and parts must be lists of strings)")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in forms.items()):
        raise ValueError(f"lexical vocabulary file is corrupt: {path} (forms must map strings to strings)")
    return terms, parts, forms
