"""Norwegian analysis for lexical retrieval: dictionary lemmas, stems, compounds split into words.

Dense embeddings blur names, numbers and rare domain words; lexical search
(``bm25.py``) catches them exactly.  Words become terms through simplemma's
bokmål and nynorsk dictionaries ("nestlederne" and "nestledere" both become
"nestleder"), with Snowball stemming only for words the dictionaries do not
know.  Norwegian writes compounds as one word, so every term is also split into
dictionary words ("barnevernsfelt" -> "barnevern" + "felt"), and a question word
matches a compound only through such a part, never through an arbitrary
substring ("sted" is a part of "stedsutvikling", "nestle" is no part of
"nestleder").
"""

from __future__ import annotations

import functools
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping

import Stemmer
from stop_words import get_stop_words

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

# Words that frame a question in English or Norwegian rather than name what it is about.
QUESTION_FRAME = STOP_WORDS | frozenset(get_stop_words("english")) | frozenset(
    "say said says tell told hva kva hvem kven når kor hvor hvorfor korfor vedtok vedtak krevde kravde mente meinte fjor ifjor".split()
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


def stem(word: str) -> str:
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
def forms_by_lemma() -> dict[str, list[str]]:
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
    return "" if found in STOP_WORDS else stem(found)


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
