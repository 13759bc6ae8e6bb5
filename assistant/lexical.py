"""Lexical retrieval: BM25 over Norwegian (bokmål) analysed terms.

Dense embeddings blur names, numbers and rare domain words; this index catches
them exactly.  Norwegian writes compounds as one word, so a query term also
matches inside longer vocabulary terms (``barnevern`` in ``barnevernsfeltet``,
``tilskudd`` in ``rammetilskudd``) at a reduced weight, and a query compound
unknown to the corpus is split into known parts.  Both are resolved against the
vocabulary at query time, so the index stays one term-document matrix.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
import unicodedata
import zipfile
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import Stemmer
from scipy import sparse

FORMAT_VERSION = 1
MATRIX_FILE = "lexical.npz"
VOCAB_FILE = "lexical_vocab.json"

MIN_PART = 4
MIN_REST = 3
LINKING = ("s", "e")

# Bokmål function words, plus the verbs of saying: in questions they are the
# frame ("Hva sa KS om ...") and in passages quote attribution ("..., sa Helgesen"),
# so matching them only pulls quotes up.
STOP_WORDS = frozenset(
    """
    og i jeg det at en et ett den de dem der til er som på med han ham hans
    hun henne hennes av ikke så var meg seg men har om vi oss vår vårt våre
    min mitt mine du deg din ditt dine dere deres dens dets sin sitt sine
    man ha hadde hatt nå over da ved fra ut opp ned inn kan kunne skal
    skulle vil ville må måtte bør burde hvor hva hvem hvilken hvilket hvilke
    hvordan hvorfor hvorvidt når eller enn selv selve her alle alt all bli
    ble blitt blir være vært noen noe ingen intet kun bare ja nei etter
    denne dette disse for mot å uten samme sånn sånne slik slike mellom hver
    hvert hverandre hvis dersom både enten verken hverken fordi før også
    begge siden mens samt likevel dog altså derfor dermed deretter dit hit
    hos gjennom under innen innenfor utenfor blant per via rundt langs frem
    fram mye mer mest mange flere flest litt mindre meget svært veldig
    ganske helt nok jo vel visst kanskje gjerne aldri alltid ofte igjen enda
    ennå allerede fortsatt sammen egen eget egne annen annet andre hele
    dessuten ca osv sa si sier sagt
    """.split()
)

_WORD = re.compile(r"[^\W_]+")
_TOP = "\U0010ffff"  # sorts after every term that starts with a given prefix


def _fold_table() -> dict[int, str | None]:
    """Latin letters with diacritics -> bare letters, except æøå; stray combining marks -> gone."""
    table: dict[int, str | None] = {cp: None for cp in range(0x300, 0x370)}
    for cp in [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]:
        char = chr(cp)
        bare = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
        if char not in "æøåÆØÅ" and bare != char:
            table[cp] = bare
    return table


_FOLD = _fold_table()
_FOLDABLE = re.compile("[" + "".join(re.escape(chr(cp)) for cp in _FOLD) + "]")
_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    """PyStemmer objects are not thread-safe, so each thread gets its own."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("norwegian")
    return stemmer


def normalize(text: str) -> str:
    """Fold case and foreign accents but keep æøå, which change meaning (får/far)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.translate(_FOLD) if _FOLDABLE.search(text) else text


def surface_tokens(text: str) -> list[str]:
    """Words before stemming; a hyphen splits ("SLT-samarbeidet" is about samarbeid)."""
    return [w for w in _WORD.findall(normalize(text)) if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())]


def analyze(text: str) -> list[str]:
    """Terms as indexed: inflections meet ("barnevernet", "barnevernets" -> "barnevern")."""
    return _stemmer().stemWords(surface_tokens(text))


def compound_parts(term: str) -> list[str]:
    """The strings a query term may equal to match inside this (analysed) term.

    A part is a prefix or suffix of at least MIN_PART characters that leaves at
    least MIN_REST characters, so whole words and inflection noise are excluded.
    The index finds the same relation by sorted lookup; this is its definition.
    """
    last = len(term) - MIN_REST
    prefixes = [term[:end] for end in range(MIN_PART, last + 1)]
    suffixes = [term[start:] for start in range(MIN_REST, len(term) - MIN_PART + 1)]
    return prefixes + suffixes


def bm25_weights(tf: sparse.csr_matrix, k1: float, b: float) -> sparse.csc_matrix:
    """Precompute per-posting BM25 so a query is only a sum of column slices."""
    n_docs = tf.shape[0]
    doc_len = np.asarray(tf.sum(axis=1)).ravel()
    avg_len = float(doc_len.mean()) if n_docs else 0.0
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    rows = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
    norm = k1 * (1.0 - b + b * doc_len[rows] / (avg_len or 1.0))
    data = idf(df, n_docs)[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + norm)
    weights = sparse.csr_matrix((data.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape)
    return weights.tocsc()


def idf(df: np.ndarray | int, n_docs: int) -> np.ndarray:
    """Lucene's BM25 idf: never negative, so very common terms still count a little."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


class LexicalIndex:
    """BM25 over a docs x terms CSC matrix; term ids are the sorted vocabulary order."""

    def __init__(
        self,
        weights: sparse.csc_matrix,
        terms: list[str],
        suffix_order: np.ndarray,
        compound_weight: float,
        max_expansions: int,
    ) -> None:
        self._weights = weights
        self._terms = terms
        self._ids = {term: i for i, term in enumerate(terms)}
        self._lengths = np.fromiter(map(len, terms), dtype=np.int32, count=len(terms))
        self._df = np.diff(weights.indptr)
        self._suffix_order = suffix_order
        self.compound_weight = compound_weight
        self.max_expansions = max_expansions

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        k1: float = 1.2,
        b: float = 0.75,
        compound_weight: float = 0.5,
        max_expansions: int = 256,
    ) -> LexicalIndex:
        """One passage per text; its position is its id."""
        surface_ids: dict[str, int] = {}
        doc_tokens = [[surface_ids.setdefault(t, len(surface_ids)) for t in surface_tokens(x)] for x in texts]
        stems = _stemmer().stemWords(list(surface_ids))
        terms = sorted(set(stems))
        term_of = {term: i for i, term in enumerate(terms)}
        surface_to_term = np.fromiter((term_of[s] for s in stems), dtype=np.int64, count=len(stems))
        counts = np.fromiter(map(len, doc_tokens), dtype=np.int64, count=len(doc_tokens))
        flat = np.fromiter(chain.from_iterable(doc_tokens), dtype=np.int64, count=int(counts.sum()))
        rows = np.repeat(np.arange(len(texts)), counts)
        tf = sparse.csr_matrix(
            (np.ones(len(flat), dtype=np.float32), (rows, surface_to_term[flat])),
            shape=(len(texts), len(terms)),
        )
        tf.sum_duplicates()
        return cls(bm25_weights(tf, k1, b), terms, _suffix_order(terms), compound_weight, max_expansions)

    def __len__(self) -> int:
        return self._weights.shape[0]

    def score_all(self, query: str) -> np.ndarray:
        """Dense float32 scores, one per passage, for fusion and diagnostics."""
        columns, coefficients = self._query_vector(query)
        if not len(columns):
            return np.zeros(len(self), dtype=np.float32)
        return np.asarray(self._weights[:, columns] @ coefficients, dtype=np.float32).ravel()

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

    def query_terms(self, query: str) -> list[str]:
        """Analysed query terms the index can match, whole or inside a compound.

        Unknown query compounds appear as the parts they were split into.  Fusion
        reads an empty list as "no lexical evidence" and weights BM25 down.
        """
        return list(dict.fromkeys(part for term in analyze(query) for part in self._parts(term)))

    def coverage(self, query: str) -> float:
        """Idf-weighted share of the question's words that the texts contain.

        A word found only inside compounds counts half. A question about a
        topic the texts never mention ("bompenger") scores low even when its
        frame words ("KS", "kommune") are everywhere.
        """
        terms = list(dict.fromkeys(analyze(query)))
        if not terms or not len(self):
            return 0.0
        n_docs = len(self)
        unseen = float(idf(0, n_docs))
        total = found = 0.0
        for term in terms:
            column = self._ids.get(term)
            if column is not None:
                weight = float(idf(self._df[column], n_docs))
                total += weight
                found += weight
            else:
                total += unseen
                found += 0.5 * unseen if self._parts(term) else 0.0
        return found / total

    def save(self, folder: Path) -> None:
        """Plain npz + JSON so the index loads without pickle and diffs as data."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        w = self._weights
        np.savez(
            folder / MATRIX_FILE,
            format_version=np.int64(FORMAT_VERSION),
            shape=np.asarray(w.shape, dtype=np.int64),
            data=w.data,
            indices=w.indices,
            indptr=w.indptr,
            suffix_order=self._suffix_order,
            compound_weight=np.float64(self.compound_weight),
            max_expansions=np.int64(self.max_expansions),
        )
        vocab = {"format_version": FORMAT_VERSION, "terms": self._terms}
        (folder / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        """Refuse missing, corrupt or foreign-version files with the file's name."""
        folder = Path(folder)
        arrays = _read_npz(folder / MATRIX_FILE)
        terms = _read_vocab(folder / VOCAB_FILE)
        shape = tuple(int(n) for n in arrays["shape"])
        order = arrays["suffix_order"]
        if len(shape) != 2 or shape[1] != len(terms) or not np.array_equal(np.sort(order), np.arange(len(terms))):
            raise ValueError(f"{folder / MATRIX_FILE} does not match {folder / VOCAB_FILE}")
        try:
            weights = sparse.csc_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
            weights.check_format(full_check=True)
        except ValueError as err:
            raise ValueError(f"{folder / MATRIX_FILE} holds a broken matrix: {err}") from err
        return cls(
            weights,
            terms,
            order,
            float(arrays["compound_weight"]),
            int(arrays["max_expansions"]),
        )

    def _query_vector(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Column ids and coefficients: whole terms 1, compound matches at most compound_weight."""
        weights: dict[int, float] = {}
        for term in dict.fromkeys(analyze(query)):
            parts = self._parts(term)
            factor = 1.0 if len(parts) == 1 else self.compound_weight
            for part in parts:
                for column, coefficient in self._term_weights(part):
                    weights[column] = weights.get(column, 0.0) + factor * coefficient
        columns = np.fromiter(weights, dtype=np.int64, count=len(weights))
        return columns, np.fromiter(weights.values(), dtype=np.float32, count=len(weights))

    def _parts(self, term: str) -> list[str]:
        """The term itself if the index can match it, else its split, else nothing."""
        return [term] if self._matchable(term) else self._split(term)

    def _term_weights(self, term: str) -> list[tuple[int, float]]:
        """The term's own column at 1, plus the compounds that contain it."""
        whole = self._ids.get(term)
        own = [(whole, 1.0)] if whole is not None else []
        return own + self._partial_weights(term, whole)

    def _partial_weights(self, term: str, whole: int | None) -> list[tuple[int, float]]:
        """Scale each compound's column to the part's idf, so a part never beats the whole word.

        A rare compound has a higher idf than its common part; without rescaling a
        query for "tilskudd" would prefer "rammetilskudd" over "tilskudd" itself.
        """
        columns = self._expansions(term)
        if not len(columns):
            return []
        n_docs = len(self)
        df = min(n_docs, int(self._df[columns].sum()) + (int(self._df[whole]) if whole is not None else 0))
        coefficients = self.compound_weight * idf(df, n_docs) / idf(self._df[columns], n_docs)
        return list(zip(columns.tolist(), coefficients.tolist()))

    def _expansions(self, term: str) -> np.ndarray:
        """Vocabulary terms that have ``term`` among their compound_parts.

        Capped at the max_expansions most frequent, so a short common part cannot
        turn one query into thousands of column slices.
        """
        if len(term) < MIN_PART:
            return np.empty(0, dtype=np.int64)
        lo = bisect.bisect_left(self._terms, term)
        hi = bisect.bisect_left(self._terms, term + _TOP, lo)
        heads = np.arange(lo, hi)
        reverse = term[::-1]
        key = self._reversed
        lo = bisect.bisect_left(self._suffix_order, reverse, key=key)
        hi = bisect.bisect_left(self._suffix_order, reverse + _TOP, lo, key=key)
        found = np.union1d(heads, self._suffix_order[lo:hi])
        found = found[self._lengths[found] >= len(term) + MIN_REST]
        if len(found) > self.max_expansions:
            found = found[np.argsort(-self._df[found], kind="stable")[: self.max_expansions]]
        return found.astype(np.int64)

    def _reversed(self, term_id: int) -> str:
        return self._terms[term_id][::-1]

    def _split(self, term: str) -> list[str]:
        """Split an unknown query compound into two matchable parts.

        "barnevernskostnad" -> "barnevern" + "kostnad", each then matched whole or
        inside corpus compounds.  The longest tail that matches wins, and a linking
        s/e is dropped from the head when the head still matches without it.
        """
        for cut in range(MIN_PART, len(term) - MIN_PART + 1):
            tail = term[cut:]
            if not self._matchable(tail):
                continue
            head = term[:cut]
            heads = [head[:-1], head] if head.endswith(LINKING) else [head]
            found = next((h for h in heads if len(h) >= MIN_PART and self._matchable(h)), None)
            if found is not None:
                return [found, tail]
        return []

    def _matchable(self, term: str) -> bool:
        return term in self._ids or len(self._expansions(term)) > 0


def _suffix_order(terms: list[str]) -> np.ndarray:
    """Term ids sorted by reversed spelling, for suffix lookup by bisection."""
    return np.asarray(sorted(range(len(terms)), key=lambda i: terms[i][::-1]), dtype=np.int64)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"lexical index file missing: {path}")
    needed = ("format_version", "shape", "data", "indices", "indptr", "suffix_order", "compound_weight", "max_expansions")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in needed}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"lexical index file is corrupt: {path} ({err})") from err
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {int(arrays['format_version'])}, expected {FORMAT_VERSION}")
    return arrays


def _read_vocab(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"lexical vocabulary file missing: {path}")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
        version, terms = vocab["format_version"], vocab["terms"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"lexical vocabulary file is corrupt: {path} ({err})") from err
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}, expected {FORMAT_VERSION}")
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise ValueError(f"lexical vocabulary file is corrupt: {path} (terms must be a list of strings)")
    return terms


_NO_MARKERS = frozenset(
    """
    hva hvem hvor hvilke hvilken hvilket hvordan hvorfor når og er ikke det den
    som om sa sier med på av til fra har hadde var blir ble skal vil kan må også
    eller jeg vi de hun han seg sitt sine dette disse noen noe mye mange
    mener ønsker gjør står ved etter mellom hos blant enn
    """.split()
)
_EN_MARKERS = frozenset(
    """
    what who whom whose which where when why how the a an is are was were be been
    being do does did done have has had will would shall should can could may
    might must of in on with about from into than then this that these those
    there their they them it its he she we you your our not and or but if any
    some much many more most said say says tell told
    """.split()
)
_NO_SPELLING = re.compile(r"kj|gj|hj|sj|(?:ene|het|lig|ige)$")
_EN_SPELLING = re.compile(r"[cqwxz]|th|(?:tion|ly)$")


def looks_norwegian(text: str) -> float:
    """0..1 guess that a question is Norwegian rather than English.

    Fusion needs it because English questions rarely share words with the
    Norwegian passages.  Keyword-only queries lean Norwegian (the corpus is), and
    æ/ø/å is strong evidence on its own; spelling habits settle unknown words.
    """
    evidence = 0.5
    for word in re.findall(r"[^\W\d_]+", unicodedata.normalize("NFKC", text).casefold()):
        if any(ch in "æøå" for ch in word):
            evidence += 2.0
        elif word in _NO_MARKERS:
            evidence += 1.0
        elif word in _EN_MARKERS:
            evidence -= 1.0
        elif _NO_SPELLING.search(word):
            evidence += 0.5
        elif _EN_SPELLING.search(word):
            evidence -= 0.5
    return 1.0 / (1.0 + math.exp(-evidence))
