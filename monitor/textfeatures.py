"""Text features for clustering: terms, name-like phrases, numbers and a shingle sketch.

Pure functions, language-light: English and German stop words, number words read as
digits, a cheap suffix stemmer (no dictionary), and the same fold as entity matching
(:func:`monitor.entities.fold`), so case, accents, quotes, hyphens and possessives are
handled once and the same way everywhere.  Title kickers a feed repeats (rubrics) can
be discounted; the shingle sketch (bottom-k of CRC32 hashes of word 3-grams) spots
near-identical texts.

:func:`prepare` computes the features that do not depend on the clusterer's memory
(everything when the title has no rubric) where the article is parsed, in a pool
worker; :func:`unpack` restores them in the main process.
"""

from __future__ import annotations

import functools
import re
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from monitor.entities import fold
from monitor.model import PreparedFeatures

__all__ = [
    "STOP_WORDS",
    "TextFeatures",
    "extract",
    "is_year",
    "kickers",
    "name_phrases",
    "prepare",
    "sketch_similarity",
    "stem",
    "surface_words",
    "tokens",
    "unpack",
]

_EN_STOP = """
a about above after again against ago all almost also although always am among an and
another any are around as at away back be became because been before being below between
both but by came can cannot could did do does doing done down during each either else
even ever every few for from further get gets getting got had has have having he her here
hers herself him himself his how however i if in including into is it its itself just
last least less like made make makes many may me might more most much must my myself near
need never new next no nor not now of off often on once one only onto or other our ours
ourselves out over own per put quite rather really said same say says see seen several
shall she should since so some still such take than that the their theirs them themselves
then there these they this those though through thus to too toward towards under until up
upon use used very via was way we well were what when where whether which while who
whom whose why will with within without would yet you your yours yourself yourselves
amid amidst across along behind beside besides beyond despite inside outside unless whilst
watch live update updates latest news video read week today tonight yesterday tomorrow
mr mrs ms dr
big biggest small large major good best better bad worst high low long short old first
second third top full half part set end start look looks come comes going goes give gives
gave know known tell told show shows shown find found think want wants call calls called
keep kept leave left turn turns help helps try tries move moves face faces hit hits run
runs time times year years day days month months people man woman men women thing things
world country way ways home life lot place case group number fact point report reports
reported according amid despite says said claim claims plan plans deal deals talk talks
"""

_DE_STOP = """
ab aber alle allem allen aller alles als also am an ander andere anderem anderen anderer
anderes anders auch auf aus bei beim bin bis bisher bist da dabei dadurch dafur dagegen
daher dahin damals damit danach daneben dann daran darauf daraus darin daruber darum
darunter das dass dasselbe davon davor dazu dein deine deinem deinen deiner dem demnach
den denen denn dennoch der deren derselbe des deshalb desselben dessen dich die dies diese
dieselbe dieselben diesem diesen dieser dieses dir doch dort du durch eben ebenso ein eine
einem einen einer eines einige einigen einiger einiges einmal er es etwa etwas euch euer
eure fur gab gar gegen gegenuber gehabt gemacht gewesen gibt gleich hab habe haben hat
hatte hatten hier hin hinter ich ihm ihn ihnen ihr ihre ihrem ihren ihrer ihres im immer
in indem ins ist ja jede jedem jeden jeder jedes jedoch jene jenem jenen jener jenes jetzt
kann kannst kaum kein keine keinem keinen keiner keines konnen konnte konnten lassen man
manche manchem manchen mancher manches mehr mein meine meinem meinen meiner meines mich mir
mit muss musste nach nachdem nein nicht nichts noch nun nur ob oder ohne schon sehr sei
seid sein seine seinem seinen seiner seines seit seitdem selbst sich sie sind so sogar
solche solchem solchen solcher solches soll sollen sollte sollten sondern sonst sowie uber
um und uns unser unsere unserem unseren unserer unter viel viele vielen vom von vor wahrend
war waren warst was weil weiter weitere weiteren welche welchem welchen welcher welches
wenn wer werde werden wie wieder will wir wird wirst wo wollen wollte wollten worden wurde
wurden zu zum zur zwar zwischen zuvor heute gestern morgen laut sagt sagte neue neuen neuer
neues erst erste ersten mal bereits derzeit offenbar wohl jahr jahre jahren prozent mehr
beste besten bester bestes gut gute guten guter gutes grosse grossen grosser grosses klein
kleine kleinen lang lange langen hoch hohe hohen stark starke starken schnell schnelle
zeigen zeigt zeigte lernen lernt machen macht gemacht geben gab steht stehen kommt kommen
kam geht gehen ging bleibt bleiben sieht sehen sah heisst soll sollen sagen sagte gesagt
teil ende anfang seite zeit tag tage tagen woche wochen monat monate monaten mal menschen
leute fall falle frage fragen grund art weise rund fast knapp etwa ganz viele vielen wenige
wenigen kunftig kunftige kunftigen moglich mogliche moglichen aktuell aktuelle aktuellen
weitere weiteren bisher bislang inzwischen zudem jedoch allerdings nun hier dort dabei
eigentlich dafur davon darum deutlich eigenen eigene eigener neu alt alten alte
"""

STOP_WORDS: frozenset[str] = frozenset((_EN_STOP + _DE_STOP).split())

# Number words read as digits, so "seven dead" and "sieben Tote" share "7" ("one"/"ein"
# left out: they are mostly articles).
_NUMBER_WORDS: dict[str, str] = {
    word: str(value)
    for value, words in enumerate(
        (
            "",
            "",
            "two zwei",
            "three drei",
            "four vier",
            "five funf",
            "six sechs",
            "seven sieben",
            "eight acht",
            "nine neun",
            "ten zehn",
            "eleven elf",
            "twelve zwolf",
        )
    )
    for word in words.split()
}

# Suffixes stripped by the stemmer, longest first; a stem keeps at least 4 characters.
_SUFFIXES: tuple[str, ...] = (
    "ungen",
    "ing",
    "ies",
    "ern",
    "ens",
    "est",
    "en",
    "er",
    "es",
    "em",
    "ed",
    "e",
    "s",
    "n",
)
_MIN_STEM = 4
# the suffixes a word's last letter allows, in the same order: 2 or 3 tests, not 14
_SUFFIXES_BY_LAST: dict[str, tuple[str, ...]] = {
    last: tuple(s for s in _SUFFIXES if s[-1] == last) for last in {s[-1] for s in _SUFFIXES}
}

_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:[.,\u202f\u00a0]\d{3})+(?![\d])")
_DECIMAL = re.compile(r"(?<=\d)[.,](?=\d)")
_NAME_WORD = r"(?:[A-ZÄÖÜÀ-ÞĀ-Ž][\w'’]*(?:-[A-ZÄÖÜ\d][\w'’]*)*)"
_NAME_PHRASE = re.compile(rf"(?<![\w-]){_NAME_WORD}(?:\s+{_NAME_WORD})*")
_ACRONYM = re.compile(r"^[A-Z\d]*[A-Z][A-Z\d]*[a-z]?[A-Z][A-Z\d]*$|^[A-Z]{2,}$")

_WRITTEN_WORD = re.compile(r"[^\W_]+")
_MAX_NAME_WORDS = 3  # longer runs of capitalised words are German nouns, not names
_SKETCH_SIZE = 48
_SHINGLE = 3
_EMPTY: frozenset[str] = frozenset()  # shared: most articles have no weak terms or numbers
_NAME_SEP = "\x1f"  # never inside a name: names are made of word characters and spaces


@dataclass(frozen=True)
class TextFeatures:
    """What clustering needs from one article's text."""

    terms: dict[str, int]  # stem -> weighted count (title words count more)
    surface: dict[str, str]  # stem -> a word as written, for explanations
    names: dict[str, str]  # folded name-like phrase -> as written ("aleph alpha": "Aleph Alpha")
    numbers: frozenset[str]  # number tokens ("400000", "7p7")
    sketch: array[int]  # bottom-k hashes of word shingles of the whole text, ascending
    weak: frozenset[str] = frozenset()  # terms only in the feed's rubric kickers


@functools.lru_cache(maxsize=1 << 12)
def stem(word: str) -> str:
    """Strip one common English/German inflection suffix (cheap, no dictionary).

    Cached, and interned: the same words recur in every article, and a term is then one
    string however many articles and index entries hold it.  The cache is kept small
    (~190 bytes an entry, 4,096 of them): the common words hit it (99% of the time with
    16,384 on a warm start over 37,000 articles), a miss costs about a microsecond, and
    a daemon's vocabulary grows for as long as it runs.
    """
    return sys.intern(_strip_suffix(word))


def _strip_suffix(word: str) -> str:
    if word[0].isdigit():
        return word
    if word.endswith("ies") and len(word) - 3 >= _MIN_STEM - 1:
        return word[:-3] + "y"
    for suffix in _SUFFIXES_BY_LAST.get(word[-1], ()):
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: -len(suffix)]
    return word


def _prepare_numbers(text: str) -> str:
    """'400.000' and '400,000' -> '400000'; '7.7' -> '7p7' so fold keeps one token."""
    text = _THOUSANDS.sub(lambda m: re.sub(r"\D", "", m.group(0)), text)
    return _DECIMAL.sub("p", text)


def tokens(text: str) -> list[str]:
    """Folded words of ``text`` (stop words and one-letter words dropped), unstemmed."""
    return [
        _NUMBER_WORDS.get(w, w)
        for w in fold(_prepare_numbers(text)).split()
        if w not in STOP_WORDS and (len(w) > 1 or w.isdigit()) and w[0].isalnum()
    ]


_KICKER_SPLIT = re.compile(r"\s*[:|]\s+|\s+\|\s*")


def kickers(title: str) -> list[str]:
    """The folded leading segments of a title, before a colon or a bar.

    "heise-Angebot: iX-Workshop: Active Directory hacken" gives ``["heise angebot",
    "ix workshop"]``.  A kicker its feed has used before is a rubric (a section name
    such as "Top 10" or "Kommentar"), not news.
    """
    segments = _KICKER_SPLIT.split(title)
    return [k for k in (fold(seg).strip() for seg in segments[:-1]) if k]


def is_year(term: str) -> bool:
    """A year ("2026") says little about which event an article reports."""
    return len(term) == 4 and term.isdigit() and 1900 <= int(term) <= 2099


def name_phrases(text: str) -> dict[str, str]:
    """Name-like phrases of original-case text, folded.

    A run of two or more capitalised words ("Aleph Alpha", "Jerome Powell"), or one
    acronym-like word ("TSMC", "BfV"). Single capitalised words are left to the term
    weights: in German every noun is capitalised.
    """
    found: dict[str, str] = {}
    for match in _NAME_PHRASE.finditer(text):
        for run in _name_runs(match.group(0).split()):
            if 2 <= len(run) <= _MAX_NAME_WORDS:
                phrase = " ".join(run)
                found.setdefault(fold(phrase).strip(), phrase)
        for word in match.group(0).split():
            for part in _bare(word).split("-"):
                if _ACRONYM.match(part):
                    found.setdefault(fold(part).strip(), part)
    found.pop("", None)
    return found


def _split_rubrics(title: str, rubrics: Collection[str]) -> tuple[str, str]:
    """(the title without its rubric kickers, the rubric kickers)."""
    segments = _KICKER_SPLIT.split(title)
    rubric = [seg for seg in segments[:-1] if fold(seg).strip() in rubrics]
    kept = [seg for seg in segments[:-1] if fold(seg).strip() not in rubrics]
    return " ".join([*kept, segments[-1]]), " ".join(rubric)


def _as_written(text: str) -> dict[str, str]:
    """Folded word -> the word as the text writes it ("affare" -> "Affäre")."""
    written: dict[str, str] = {}
    for word in _WRITTEN_WORD.findall(text):
        written.setdefault(fold(word).strip(), word)
    return written


def _bare(word: str) -> str:
    return word.removesuffix("'s").removesuffix("’s")


def _name_runs(words: list[str]) -> list[list[str]]:
    """Split a run of capitalised words at compounds ("TSMC-Pläne") and possessives."""
    runs: list[list[str]] = [[]]
    for word in words:
        if "-" in word:
            runs.append([])
            continue
        if not runs[-1] and fold(word).strip() in STOP_WORDS:
            continue  # "The", "Der" at a sentence start
        runs[-1].append(_bare(word))
        if _bare(word) != word:
            runs.append([])
    return runs


def _sketch(words: list[str]) -> array[int]:
    if not words:
        return array("I")
    if len(words) < _SHINGLE:
        hashes = [zlib.crc32(" ".join(words).encode())]
    else:  # a repeated shingle gives a repeated hash: no need to collect the strings first
        grams = zip(*(words[i:] for i in range(_SHINGLE)), strict=False)
        hashes = sorted({zlib.crc32(" ".join(gram).encode()) for gram in grams})
    return array("I", hashes[:_SKETCH_SIZE])  # 4 bytes a hash, not a Python int each


def sketch_similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of the two shingle sets (bottom-k estimator)."""
    if not a or not b:
        return 0.0
    k = min(_SKETCH_SIZE, len(set(a) | set(b)))
    union_bottom = sorted(set(a) | set(b))[:k]
    both = set(a) & set(b)
    return sum(1 for h in union_bottom if h in both) / k


def extract(
    title: str,
    summary: str,
    content: str,
    title_weight: int = 2,
    rubrics: Collection[str] = (),
    *,
    surface: bool = True,
    prepared: PreparedFeatures | None = None,
) -> TextFeatures:
    """Features of one article: title and summary for terms, everything for the sketch.

    ``rubrics`` are title kickers the article's feed has used before (section names such
    as "Top 10" or "Kommentar"): their words weigh as summary words, and when they
    appear nowhere else they are ``weak``: no evidence that two articles belong together.
    ``surface=False`` leaves ``surface`` empty (see :func:`surface_words`).  Names and
    the sketch do not depend on rubrics: they are taken from ``prepared`` when given.
    """
    terms: Counter[str] = Counter()
    headline, rubric, body = _term_texts(title, summary, content, rubrics)
    for weight, text in ((title_weight, headline), (1, rubric), (1, body)):
        for word in tokens(text):
            terms[stem(word)] += weight
    weak = _EMPTY
    if rubric:  # only then can a term be in the rubric kickers alone
        weak = frozenset(stem(w) for w in tokens(rubric)) - {
            stem(w) for text in (headline, body) for w in tokens(text)
        }
    if prepared is not None:
        names, sketch = _unpack_names(prepared.names), prepared.sketch
    else:
        names = name_phrases(body) | name_phrases(title)
        sketch = _sketch(fold(title + " " + (content or summary)).split())
    return TextFeatures(
        terms=dict(terms),
        surface=surface_words(title, summary, content, rubrics) if surface else {},
        names=names,
        numbers=_numbers(terms, weak),
        sketch=sketch,
        weak=weak or _EMPTY,
    )


def surface_words(
    title: str, summary: str, content: str, rubrics: Collection[str] = ()
) -> dict[str, str]:
    """``extract(...).surface`` for the same text: each term -> a word as written.

    Only explanations read it, so the clusterer asks for it when it explains a join.
    """
    found: dict[str, str] = {}
    for text in _term_texts(title, summary, content, rubrics):
        if not text:
            continue
        written = _as_written(text)
        for word in tokens(text):
            found.setdefault(stem(word), written.get(word, word))
    return found


def _term_texts(
    title: str, summary: str, content: str, rubrics: Collection[str]
) -> tuple[str, str, str]:
    """(headline without rubric kickers, the rubric kickers, body): where terms come from."""
    headline, rubric = _split_rubrics(title, rubrics) if rubrics else (title, "")
    return headline, rubric, summary or content[:1000]


def _numbers(terms: Collection[str], weak: frozenset[str]) -> frozenset[str]:
    found = frozenset(t for t in terms if t[0].isdigit() and not is_year(t) and t not in weak)
    return found or _EMPTY


def prepare(title: str, summary: str, content: str, title_weight: int = 2) -> PreparedFeatures:
    """``extract`` without rubrics, packed to travel from a parse worker (see ``unpack``)."""
    features = extract(title, summary, content, title_weight)
    return PreparedFeatures(
        title_weight=title_weight,
        terms=" ".join(features.terms),
        counts=array("I", features.terms.values()),
        surface=" ".join(features.surface.values()),
        names=_NAME_SEP.join(part for pair in features.names.items() for part in pair),
        sketch=features.sketch,
        kickers=tuple(kickers(title)),
    )


def unpack(prepared: PreparedFeatures) -> TextFeatures:
    """The ``TextFeatures`` that ``prepare`` packed: what ``extract`` gives without rubrics."""
    if not prepared.terms:
        return TextFeatures({}, {}, _unpack_names(prepared.names), _EMPTY, prepared.sketch)
    keys = [sys.intern(t) for t in prepared.terms.split(" ")]
    terms = dict(zip(keys, prepared.counts, strict=True))
    return TextFeatures(
        terms=terms,
        surface=dict(zip(keys, prepared.surface.split(" "), strict=True)),
        names=_unpack_names(prepared.names),
        numbers=_numbers(terms, _EMPTY),
        sketch=prepared.sketch,
    )


def _unpack_names(packed: str) -> dict[str, str]:
    if not packed:
        return {}
    parts = packed.split(_NAME_SEP)
    return dict(zip(parts[::2], parts[1::2], strict=True))
