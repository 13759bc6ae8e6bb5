"""Lexical retrieval: BM25 over Norwegian terms, with dictionary lemmas and compounds split into words.

Dense embeddings blur names, numbers and rare domain words; this index catches
them exactly.  Words become terms through simplemma's bokmål and nynorsk
dictionaries ("nestlederne" and "nestledere" both become "nestleder"), with
Snowball stemming only for words the dictionaries do not know.  Norwegian
writes compounds as one word, so every term is also split into dictionary
words ("barnevernsfelt" -> "barnevern" + "felt"), and a question word matches a
compound only through such a part, never through an arbitrary substring
("sted" is a part of "stedsutvikling", "nestle" is no part of "nestleder").

Scores are divided by what the question could attain at most (the sum of its
terms' idf), so a passage that shares only a frequent word with a long question
gets little lexical weight, and a question whose words the texts never use gets
little everywhere.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import Stemmer
from scipy import sparse
from stop_words import get_stop_words

FORMAT_VERSION = 2
MATRIX_FILE = "lexical.npz"
VOCAB_FILE = "lexical_vocab.json"

MAX_WORD = 40  # longer tokens (hashes, glued text) are not words; it also bounds splitting, which is quadratic
MIN_PART = 4  # shorter "parts" (til, for, sam) would split ordinary words
LINKING = ("s", "e")

# Snowball's Norwegian list (bokmål and nynorsk), plus function words it lacks and the
# verbs of saying: in questions they are the frame ("Hva sa KS om ...") and in passages
# quote attribution ("..., sa Helgesen"), so matching them only pulls quotes up.
STOP_WORDS = frozenset(get_stop_words("norwegian")) | frozenset(
    """
    hvilket hvorvidt kor mye mer mest flere flest må måtte bør burde ham dens dets våre vårt
    dine hos blant gjennom under via per samt mens dersom enten verken hverken ca osv
    sa sier sagt seie seier
    """.split()
)

_WORD = re.compile(r"[^\W_]+")
_local = threading.local()


def _fold_table() -> dict[int, str | None]:  # pragma: no mutate block (runs at import, before any mutant is on)
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


def normalize(text: str) -> str:
    """Fold case and foreign accents but keep æøå, which change meaning (får/far)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.translate(_FOLD) if _FOLDABLE.search(text) else text


def surface_tokens(text: str) -> list[str]:
    """Words before lemmatising; a hyphen splits ("SLT-samarbeidet" is about samarbeid)."""
    return [
        w for w in _WORD.findall(normalize(text))
        if w not in STOP_WORDS and (len(w) > 1 or w.isdigit()) and len(w) <= MAX_WORD
    ]


def _stem(word: str) -> str:
    """Snowball, for words no dictionary knows; PyStemmer objects are not thread-safe."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("norwegian")
    return stemmer.stemWord(word)


@functools.lru_cache(maxsize=1)
def _dictionaries() -> tuple[Mapping[str, str], ...]:
    """simplemma's bokmål and nynorsk form -> lemma tables (loaded once, ~1.5 s; builds only)."""
    from simplemma.strategies.dictionaries import DefaultDictionaryFactory

    factory = DefaultDictionaryFactory()
    return factory.get_dictionary("nb"), factory.get_dictionary("nn")


def dictionary_lemma(word: str) -> str | None:
    """The dictionary's lemma (bokmål first, then nynorsk), or None for a word it does not know."""
    for table in _dictionaries():
        found = table.get(word)
        if found is not None:
            found = normalize(found)
            return found if _WORD.fullmatch(found) else word
    return None


def is_dictionary_word(word: str) -> bool:
    return dictionary_lemma(word) is not None


def is_lemma(word: str) -> bool:
    """A headword of either dictionary: "barn" is, "samar" (a nynorsk form of "same") is not."""
    return any(table.get(word) == word for table in _dictionaries())


@functools.lru_cache(maxsize=1)
def _forms_by_lemma() -> dict[str, list[str]]:
    """Every inflected form of each lemma, so the index can carry the irregular forms of its terms."""
    forms: dict[str, list[str]] = {}
    for table in _dictionaries():
        for form, found in table.items():
            form, found = normalize(form), normalize(found)
            if form != found and _WORD.fullmatch(form):
                forms.setdefault(found, []).append(form)
    return forms


def lemma(word: str) -> str:
    return dictionary_lemma(word) or word


def term(word: str) -> str:
    """A word as indexed: the Snowball stem of its dictionary lemma (of the word itself if unknown).

    The dictionary does the inflection ("foreslo" -> "foreslå", "nestlederne" ->
    "nestleder"); stemming the lemma then joins the noun and the verb the
    dictionary keeps apart ("samarbeidet" -> "samarbeide", "samarbeid").
    """
    found = lemma(word)
    return "" if found in STOP_WORDS else _stem(found)


def analyze(text: str, to_term: Callable[[str], str] = term) -> list[str]:
    """Terms as indexed: inflections meet ("barnevernet", "barnevernets" -> "barnevern")."""
    return [t for t in map(to_term, surface_tokens(text)) if t]


def split_compound(word: str, is_word: Callable[[str], bool], is_head: Callable[[str], bool] | None = None) -> list[str]:
    """The fewest words that spell ``word`` (a linking s or e may follow any but the last); [] if none.

    Every part has at least MIN_PART letters and is no stop word, so "forebygging" may
    split into "fore" + "bygging" but "samarbeid" does not become "sam" + "arbeid".
    ``is_head`` judges the last part, which carries the inflection ("barnevernsfeltet"
    ends in "feltet"); it defaults to ``is_word``.
    """
    is_head = is_head or is_word
    n = len(word)
    if n < 2 * MIN_PART or n > MAX_WORD:
        return []
    best: list[list[str] | None] = [None] * (n + 1)  # best[i]: fewest parts spelling word[i:]
    best[n] = []
    for start in range(n - MIN_PART, -1, -1):
        for end in range(start + MIN_PART, n + 1 if start else n):  # the whole word is no part of itself
            part = word[start:end]
            if part in STOP_WORDS or not (is_head if end == n else is_word)(part):
                continue
            nexts = [end] + ([end + 1] if end < n - MIN_PART and word[end] in LINKING else [])
            for after in nexts:
                rest = best[after]
                if rest is not None and (best[start] is None or len(rest) + 1 < len(best[start])):
                    best[start] = [part, *rest]
    found = best[0]
    return found if found is not None and len(found) > 1 else []


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
        self._weights = weights
        self._terms = terms
        self._ids = {term: i for i, term in enumerate(terms)}
        self._df = np.diff(weights.indptr)
        self._compounds = {part: np.asarray(ids, dtype=np.int64) for part, ids in compounds.items()}
        self._forms = dict(forms)
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
        lemmas = {s: lemma(s) for s in surface_ids}
        words = {found for found in lemmas.values() if found not in STOP_WORDS}
        term_of = {found: _stem(found) for found in words}
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
            for part in dict.fromkeys(_stem(p) for p in split_compound(found, is_word, is_head)):
                compounds.setdefault(part, []).append(column[term_of[found]])
        matchable = set(terms) | set(compounds)
        by_lemma = _forms_by_lemma()
        forms = {}
        for found in sorted(words):
            for form in by_lemma.get(found, ()):
                wanted = term(form)
                if wanted in matchable and wanted != _stem(form):
                    forms[form] = wanted
        return cls(bm25_weights(tf, k1, b), terms, compounds, forms, compound_weight, max_expansions)

    def __len__(self) -> int:
        return self._weights.shape[0]

    def term(self, word: str) -> str:
        """A question word as the build analysed it, without the dictionaries: irregular forms are listed."""
        return self._forms.get(word) or _stem(word)

    def analyze(self, text: str) -> list[str]:
        return analyze(text, self.term)

    def score_all(self, query: str) -> np.ndarray:
        """Per passage, the share of the question's attainable score that it reaches (0..1)."""
        terms = list(dict.fromkeys(self.analyze(query)))
        columns, coefficients = self._query_vector(terms)
        if not len(columns):
            return np.zeros(len(self), dtype=np.float32)
        scores = np.asarray(self._weights[:, columns] @ coefficients, dtype=np.float32).ravel()
        return np.minimum(scores / self._attainable(terms), 1.0).astype(np.float32)

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


_NO_MARKERS = frozenset(
    """
    hva hvem hvor hvilke hvilken hvilket hvordan hvorfor når og er ikke det den
    som om sa sier med på av til fra har hadde var blir ble skal vil kan må også
    eller jeg vi de hun han seg sitt sine dette disse noen noe mye mange
    mener ønsker gjør står ved etter mellom hos blant enn
    kva kven kor korleis kvifor ikkje eg ho dei noko
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

    English questions rarely share words with the Norwegian passages, so
    ranking and the decline decision treat them differently. Keyword-only
    queries lean Norwegian (the corpus is), and æ/ø/å is strong evidence on its
    own; spelling habits settle unknown words.
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
