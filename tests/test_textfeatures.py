"""Text features prepared in the parse worker: the same features as ``extract``."""

from __future__ import annotations

import pickle
import sys

import pytest

from monitor.textfeatures import TextFeatures, extract, prepare, stem, unpack

TEXTS = [
    ("", "", ""),
    ("Prigozhin halts march on Moscow", "", ""),
    (
        "Marktbericht: DAX schließt höher",
        "Der Leitindex legte um 1,5 Prozent auf 18.400 Punkte zu; Aleph Alpha gewann.",
        "",
    ),
    (
        "heise-Angebot: iX-Workshop: Active Directory hacken",
        "Lernen Sie, wie Angreifer vorgehen.",
        "Lernen Sie, wie Angreifer vorgehen. " * 40,
    ),
    (
        "Seven dead as $400,000 is paid to the U.S. — Julia Klöckner’s view",
        "",
        "The BfV and TSMC-Pläne: Jerome Powell said rates stay at 5.25% in 2026.",
    ),
    ("Τίτλος στα ελληνικά", "Ένα κείμενο με λέξεις.", ""),
]


def as_tuple(f: TextFeatures) -> tuple[object, ...]:
    """Every field, with dict order: the clusterer's float sums follow it."""
    return (
        list(f.terms.items()),
        list(f.surface.items()),
        list(f.names.items()),
        f.numbers,
        list(f.sketch),
        f.weak,
    )


@pytest.mark.parametrize(("title", "summary", "content"), TEXTS)
def test_prepared_features_unpack_to_what_extract_gives(title, summary, content):
    prepared = pickle.loads(pickle.dumps(prepare(title, summary, content, 3)))
    assert prepared.title_weight == 3
    assert as_tuple(unpack(prepared)) == as_tuple(extract(title, summary, content, 3))


@pytest.mark.parametrize(("title", "summary", "content"), TEXTS)
def test_rubrics_with_prepared_names_and_sketch_give_what_extract_gives(title, summary, content):
    prepared = prepare(title, summary, content)
    for rubrics in ({"marktbericht"}, {"heise angebot", "ix workshop"}, {"no such kicker"}):
        expected = extract(title, summary, content, 2, rubrics)
        assert as_tuple(extract(title, summary, content, 2, rubrics, prepared=prepared)) == (
            as_tuple(expected)
        )


def test_surface_can_be_left_out():
    title, summary, content = TEXTS[4]
    full = extract(title, summary, content)
    bare = extract(title, summary, content, surface=False)
    assert bare.surface == {} and full.surface
    assert as_tuple(bare)[2:] == as_tuple(full)[2:]
    assert list(bare.terms.items()) == list(full.terms.items())


def test_terms_are_shared_strings_and_empty_sets_are_shared():
    a = extract("Prigozhin halts march", "", "")
    b = extract("Prigozhin " + "marches"[:5], "", "")  # strings built apart
    of_b = {term: term for term in b.terms}
    shared = [term for term in a.terms if term in of_b]
    assert shared and all(of_b[term] is term for term in shared)
    assert a.weak is b.weak and a.numbers is b.numbers  # one empty frozenset for all
    assert stem("marches") is stem("marches")
    unpacked = unpack(pickle.loads(pickle.dumps(prepare("Prigozhin halts march", "", ""))))
    assert all(key is sys.intern(key) for key in unpacked.terms)  # interned after a pickle


def test_prepared_features_are_compact():
    title, summary, content = TEXTS[3]
    prepared = prepare(title, summary, content)
    assert isinstance(prepared.terms, str) and isinstance(prepared.surface, str)
    assert len(pickle.dumps(prepared)) < 2 * len(prepared.terms) + len(prepared.surface) + 600
