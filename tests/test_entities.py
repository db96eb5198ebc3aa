"""Entity matching: whole words, folding, exact-case aliases, excludes, overlaps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from monitor.entities import EntityMatcher, fold, fold_exact
from monitor.model import Mention


@dataclass(frozen=True)
class Alias:
    text: str
    case: str = "ignore"


@dataclass(frozen=True)
class Entity:
    name: str
    aliases: tuple[Alias, ...] = ()
    exclude: tuple[str, ...] = ()


WAGNER = Entity(
    "Wagner Group",
    aliases=(Alias("Wagner PMC"), Alias("PMC Wagner", case="exact")),
    exclude=("Richard Wagner",),
)
AL_QAEDA = Entity("Al-Qaeda")
KLOECKNER = Entity("Julia Klöckner", aliases=(Alias("Klöckner"),))
SANCHEZ = Entity("Pedro Sanchez")
US = Entity("United States", aliases=(Alias("US", case="exact"), Alias("U.S.")))
OBRIEN = Entity("O'Brien")


def titles(entities: list[Entity], title: str) -> list[str]:
    return EntityMatcher(entities).entities_in(title, "", "")


@pytest.mark.parametrize(
    ("entity", "text", "matches"),
    [
        # case and whole words
        (WAGNER, "Wagner Group fighters seen near Bakhmut", True),
        (WAGNER, "WAGNER GROUP fighters", True),
        (WAGNER, "wagner group fighters", True),
        (WAGNER, "The Wagner Groupies fan club", False),
        (WAGNER, "Wagner Grouping", False),
        # possessives, straight and curly
        (WAGNER, "Wagner Group's fighters", True),
        (WAGNER, "Wagner Group’s fighters", True),
        (WAGNER, "the Wagner Groups' leaders", False),
        (OBRIEN, "O’Brien’s speech", True),
        (OBRIEN, "O'Brien spoke", True),
        # accents, either way round
        (KLOECKNER, "Julia Klöckner wurde Opfer", True),
        (KLOECKNER, "Julia Kloeckner", False),  # transliteration is not folding
        (KLOECKNER, "Julia Klockner", True),
        (SANCHEZ, "Spaniens Sánchez macht sich keine Sorgen", False),  # surname alone
        (SANCHEZ, "Pedro Sánchez said", True),
        # hyphen / space variants and other dashes
        (AL_QAEDA, "Al Qaeda claims attack", True),
        (AL_QAEDA, "Al-Qaeda claims attack", True),
        (AL_QAEDA, "al\u2011qaeda claims attack", True),  # non-breaking hyphen
        (AL_QAEDA, "Al \u2013 Qaeda", True),  # en dash with spaces
        (AL_QAEDA, "AlQaeda", False),
        # exact-case alias
        (US, "US troops withdraw", True),
        (US, "let us withdraw", False),
        (US, "Us and them", False),
        (US, "USB sticks", False),
        (US, "U.S. troops", True),
        (US, "US-Soldat in Haft", True),
        (WAGNER, "PMC Wagner moves", True),
        (WAGNER, "pmc wagner moves", False),  # the exact-case alias only
        (WAGNER, "Wagner PMC moves", True),
        (WAGNER, "wagner pmc moves", True),
        # quotes around a name do not hide it
        (WAGNER, "the “Wagner Group” mutiny", True),
        (WAGNER, 'the "Wagner Group" mutiny', True),
    ],
)
def test_alias_matching(entity: Entity, text: str, matches: bool) -> None:
    assert titles([entity], text) == ([entity.name] if matches else [])


@pytest.mark.parametrize(
    ("title", "summary", "content", "expected"),
    [
        ("Wagner Group advances", "", "", ["Wagner Group"]),
        ("Wagner Group advances", "", "A concert of Richard Wagner", []),  # veto anywhere
        ("Richard Wagner's Ring", "Wagner PMC", "", []),
        ("RICHARD WAGNER festival", "Wagner Group", "", []),  # exclude ignores case
        ("Wagner Group", "Richard Wagnerian", "", ["Wagner Group"]),  # whole words only
    ],
)
def test_exclude_vetoes_the_entity_for_the_whole_article(
    title: str, summary: str, content: str, expected: list[str]
) -> None:
    mentions = EntityMatcher([WAGNER]).match(title, summary, content)
    assert sorted({m.entity for m in mentions}) == expected


def test_exclude_vetoes_only_its_own_entity() -> None:
    composer = Entity("Richard Wagner")
    matcher = EntityMatcher([WAGNER, composer])
    assert matcher.entities_in("Richard Wagner and the Wagner Group", "", "") == ["Richard Wagner"]


def test_overlapping_aliases_match_every_entity() -> None:
    group = Entity("Wagner Group", aliases=(Alias("Wagner"),))
    mercenaries = Entity("Russian mercenaries", aliases=(Alias("Wagner Group"),))
    matcher = EntityMatcher([group, mercenaries])
    assert matcher.match("Wagner Group leaves Africa", "", "") == [
        Mention("Wagner Group", "Wagner Group", "title"),
        Mention("Wagner Group", "Wagner", "title"),
        Mention("Russian mercenaries", "Wagner Group", "title"),
    ]


def test_alias_inside_another_entitys_alias() -> None:
    airbus = Entity("Airbus")
    defence = Entity("Airbus Defence and Space", aliases=(Alias("Airbus DS"),))
    matcher = EntityMatcher([airbus, defence])
    assert matcher.entities_in("Airbus Defence and Space cuts jobs", "", "") == [
        "Airbus",
        "Airbus Defence and Space",
    ]
    assert matcher.entities_in("Airbus DS cuts jobs", "", "") == [
        "Airbus",
        "Airbus Defence and Space",
    ]
    assert matcher.entities_in("Airbus cuts jobs", "", "") == ["Airbus"]


def test_each_field_is_reported_once_per_alias() -> None:
    matcher = EntityMatcher([WAGNER])
    mentions = matcher.match(
        "Wagner Group and Wagner Group again",
        "Wagner PMC in the summary",
        "Wagner Group in the content, Wagner PMC too",
    )
    assert mentions == [
        Mention("Wagner Group", "Wagner Group", "title"),
        Mention("Wagner Group", "Wagner PMC", "summary"),
        Mention("Wagner Group", "Wagner Group", "content"),
        Mention("Wagner Group", "Wagner PMC", "content"),
    ]


def test_same_alias_on_two_entities_matches_both() -> None:
    a = Entity("Apple Inc", aliases=(Alias("Apple"),))
    b = Entity("Apple Records", aliases=(Alias("Apple"),))
    assert titles([a, b], "Apple sues") == ["Apple Inc", "Apple Records"]


def test_no_entities_and_empty_texts() -> None:
    assert EntityMatcher([]).match("Wagner Group", "x", "y") == []
    assert EntityMatcher([WAGNER]).match("", "", "") == []
    assert EntityMatcher([Entity("!!!")]).match("!!!", "", "") == []  # folds to nothing


def test_matching_does_not_depend_on_the_order_of_calls() -> None:
    matcher = EntityMatcher([WAGNER, US, AL_QAEDA])
    first = matcher.match("US strikes Al Qaeda", "Wagner Group", "")
    matcher.match("something else entirely", "", "")
    assert matcher.match("US strikes Al Qaeda", "Wagner Group", "") == first
    assert [m.entity for m in first] == ["Wagner Group", "United States", "Al-Qaeda"]


@pytest.mark.parametrize(
    ("text", "folded", "exact"),
    [
        ("Al-Qaeda’s   Ärger", " al qaeda arger ", " Al Qaeda Arger "),
        ("Straße İstanbul", " strasse istanbul ", " Straße Istanbul "),
        ("AT&T C++", " at & t c + + ", " AT & T C + + "),
        ("James' “quoted”", " james quoted ", " James quoted "),
        ("", " ", " "),
    ],
)
def test_fold(text: str, folded: str, exact: str) -> None:
    assert fold(text) == folded
    assert fold_exact(text) == exact


def test_symbol_aliases() -> None:
    assert titles([Entity("AT&T")], "AT&T's results") == ["AT&T"]
    assert titles([Entity("AT&T")], "AT and T results") == []
