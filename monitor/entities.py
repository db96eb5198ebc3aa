"""Entity matching: which tracked entities an article mentions, by which alias, in which field.

Pure stage. :class:`EntityMatcher` is built once from the configured entities (and again
on every config reload) and then only reads text.

Matching rules (CONTRACT.md, "mentions"):

* names and aliases match as whole words, ignoring case and accents (NFKD fold then
  casefold), a possessive ``'s`` / ``’s``, hyphen/space variants ("Al-Qaeda" = "Al
  Qaeda") and curly/straight quotes;
* an alias configured with ``case: exact`` matches case-sensitively (accents, quotes,
  hyphens and possessives are still folded);
* an ``exclude`` term (folded like a case-insensitive alias) anywhere in the article
  vetoes its entity for the whole article;
* every entity with an alias present matches, overlapping occurrences included, so
  "Wagner Group" can match two entities and one alias may sit inside another entity's.

How: every text is folded to a canonical form in which words are separated by single
spaces and the string is padded with one space at each end.  Aliases go through the
same fold and are stored as `` alias `` in one Aho-Corasick automaton (and the few
exact-case aliases in a second one), so a hit always starts and ends at a word
boundary and one scan of the article finds every alias of every entity.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import ahocorasick

from monitor.model import Mention

__all__ = [
    "AliasSpec",
    "EntityMatcher",
    "EntitySpec",
    "FIELDS",
    "fold",
    "fold_exact",
]

FIELDS: tuple[str, ...] = ("title", "summary", "content")


class AliasSpec(Protocol):
    """One configured alias (``monitor.config.Alias`` has this shape)."""

    @property
    def text(self) -> str: ...

    @property
    def case(self) -> str: ...  # "exact" | "ignore"


class EntitySpec(Protocol):
    """One configured entity (``monitor.config.EntityConfig`` has this shape)."""

    @property
    def name(self) -> str: ...

    @property
    def aliases(self) -> Sequence[AliasSpec]: ...

    @property
    def exclude(self) -> Sequence[str]: ...


# --- folding -------------------------------------------------------------------------

_QUOTES = str.maketrans(
    {
        "\u2018": "'",  # left single quote
        "\u2019": "'",  # right single quote
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",  # prime
        "\u02bc": "'",  # modifier letter apostrophe
        "`": "'",
        "\u00b4": "'",  # acute accent used as apostrophe
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
    }
)
# A possessive 's (or a bare trailing apostrophe, "James'") at the end of a word.
_QUOTE_MAP = {chr(code): str(value) for code, value in _QUOTES.items()}
_QUOTE_CHARS = re.compile("[" + "".join(re.escape(c) for c in _QUOTE_MAP) + "]")


def _straight_quotes(text: str) -> str:
    """Curly and other quote marks to straight ones (str.translate is slow on long text)."""
    if text.isascii():
        return text.replace("`", "'") if "`" in text else text
    return _QUOTE_CHARS.sub(lambda m: _QUOTE_MAP[m.group()], text)


# A word: letters and digits, apostrophes only inside ("rock'n'roll"; a trailing "James'"
# loses it), or one of the symbols that stay tokens of their own ("AT&T", "C++").
_WORD = re.compile(r"[&+#@$%€£]|[^\W_]+(?:'[^\W_]+)*")
_POSSESSIVE = re.compile(r"(?<=\w)'s?(?!\w)")
# Symbols that stay tokens of their own ("AT&T", "C++"); every other non-word character
# (hyphens, dashes, punctuation, quotes) separates words.
_SYMBOL = re.compile(r"([&+#@$%€£])")
_SEPARATOR = re.compile(r"[^\w'&+#@$%€£]+|_+")
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


# Combining marks left by NFKD (diacritics of Latin, Greek, Cyrillic and the rest).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text))


def _canonical(text: str) -> str:
    """Words separated by single spaces: one regex pass finds the words (faster than
    substituting separators), then possessives lose their ``'s``.

    A word holds no space, so a word ending in ``'s`` is exactly an ``'s `` in the
    joined text: one ``str.replace`` instead of a test per word.
    """
    text = _straight_quotes(text)
    words = _WORD.findall(text)
    if not words:
        return " "
    joined = " " + " ".join(words) + " "
    return joined.replace("'s ", " ") if "'" in text else joined


def fold_exact(text: str) -> str:
    """Fold ``text`` keeping case: accents, quotes, hyphens and possessives normalised.

    The result is the words separated by single spaces, with one space at each end.
    """
    return _canonical(_strip_accents(text))


def fold(text: str) -> str:
    """Fold ``text`` for case-insensitive matching (what clustering also tokenises).

    >>> fold("Al-Qaeda’s   Ärger")
    ' al qaeda arger '

    Words and short phrases recur endlessly across articles, so their folds are cached.
    """
    if len(text) <= _SHORT:
        return _fold_short(text)
    return _fold(text)


_SHORT = 48  # characters: a word or a name-like phrase


# 2**12 recent words and names (~1 MB): the daemon's warm start over 37,000 articles hit
# 84% of the time with 2**14 entries, and the misses a smaller cache adds (~3 us each)
# cost less than 0.1 s of its 30 s, not worth the ~3 MB more it would hold for months
@functools.lru_cache(maxsize=1 << 12)
def _fold_short(text: str) -> str:
    return _fold(text)


def _fold(text: str) -> str:
    folded = _strip_accents(text).casefold()
    if not folded.isascii():  # casefold may expand a character into one with a mark
        folded = _strip_accents(folded)
    return _canonical(folded)


# --- matcher ---------------------------------------------------------------------------

_Kind = Literal["alias", "exclude"]


@dataclass(frozen=True)
class _Hit:
    kind: _Kind
    entity: int  # index into the configured entities
    alias: int  # index into that entity's alias list (-1 for exclude)


@dataclass(frozen=True)
class _CompiledEntity:
    name: str
    aliases: tuple[str, ...]  # as configured; the name comes first


class EntityMatcher:
    """Finds every configured entity an article mentions.

    Build once per configuration; :meth:`match` is then safe to call from any thread
    (the automatons are only read).
    """

    def __init__(self, entities: Sequence[EntitySpec]) -> None:
        self._entities: list[_CompiledEntity] = []
        ignore: dict[str, list[_Hit]] = {}
        exact: dict[str, list[_Hit]] = {}
        for e_index, entity in enumerate(entities):
            aliases: list[str] = [entity.name]
            rules: list[tuple[str, bool]] = [(entity.name, False)]
            for alias in entity.aliases:
                aliases.append(alias.text)
                rules.append((alias.text, alias.case == "exact"))
            self._entities.append(_CompiledEntity(entity.name, tuple(aliases)))
            for a_index, (text, case_exact) in enumerate(rules):
                table, key = (exact, fold_exact(text)) if case_exact else (ignore, fold(text))
                if key.strip():
                    table.setdefault(key, []).append(_Hit("alias", e_index, a_index))
            for term in entity.exclude:
                key = fold(term)
                if key.strip():
                    ignore.setdefault(key, []).append(_Hit("exclude", e_index, -1))
        self._ignore = _build_automaton(ignore)
        self._exact = _build_automaton(exact)

    @property
    def size(self) -> int:
        """Number of configured entities."""
        return len(self._entities)

    def match(self, title: str, summary: str, content: str) -> list[Mention]:
        """Every (entity, alias, field) found in the article, excluded entities removed.

        Ordered by entity (as configured), then field (title, summary, content), then
        alias (name first, then aliases as configured); each triple appears once.
        """
        found: set[tuple[int, int, int]] = set()  # (entity, field, alias)
        vetoed: set[int] = set()
        hits: dict[str, list[_Hit]] = {}  # content often repeats the summary: scan it once
        for f_index, text in enumerate((title, summary, content)):
            if not text:
                continue
            if text not in hits:
                hits[text] = list(_scan(self._ignore, fold(text)))
                if self._exact is not None:
                    hits[text] += _scan(self._exact, fold_exact(text))
            for hit in hits[text]:
                if hit.kind == "exclude":
                    vetoed.add(hit.entity)
                else:
                    found.add((hit.entity, f_index, hit.alias))
        return [
            Mention(
                entity=self._entities[e].name,
                alias=self._entities[e].aliases[a],
                field=FIELDS[f],
            )
            for e, f, a in sorted(found)
            if e not in vetoed
        ]

    def entities_in(self, title: str, summary: str, content: str) -> list[str]:
        """Names of the entities :meth:`match` finds, each once, in configured order."""
        names: dict[str, None] = {}
        for mention in self.match(title, summary, content):
            names.setdefault(mention.entity, None)
        return list(names)


def _build_automaton(table: dict[str, list[_Hit]]) -> Any | None:
    if not table:
        return None
    automaton = ahocorasick.Automaton()
    for key, hits in table.items():
        automaton.add_word(key, tuple(hits))
    automaton.make_automaton()
    return automaton


def _scan(automaton: Any | None, folded: str) -> Iterator[_Hit]:
    if automaton is None or len(folded) < 3:
        return
    for _end, hits in automaton.iter(folded):
        yield from hits
