"""The scoring function's rules for headline-only articles (the general table is in
test_cluster.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitor.storyscore import DEFAULT_THRESHOLDS, Signals, score

# Two headlines of about eight words sharing two informative ones: cosine near 2/8.
SHORT_PAIR = Signals(member_cosine=0.24, centroid_cosine=0.24, shared_terms=2, title_only=True)


def test_headline_with_two_pieces_of_evidence_joins_below_join() -> None:
    method, value = score(SHORT_PAIR)
    assert method == "similar"
    assert DEFAULT_THRESHOLDS.title_only_join <= value < DEFAULT_THRESHOLDS.join


def test_the_lower_threshold_is_for_headlines_only() -> None:
    """With a summary, two words in common out of many is a weak match: ``join`` holds."""
    assert score(replace(SHORT_PAIR, title_only=False))[0] == "new"


@pytest.mark.parametrize(
    "signals",
    [
        # one piece of evidence still needs title_only_single
        replace(SHORT_PAIR, shared_terms=1),
        # too little in common even for a headline
        replace(SHORT_PAIR, member_cosine=0.15, centroid_cosine=0.15),
        # drift cap: a close member of a story the headline is far from does not count
        replace(SHORT_PAIR, member_cosine=0.35, centroid_cosine=0.08),
        # evidence without any text similarity
        replace(SHORT_PAIR, member_cosine=0.0, centroid_cosine=0.0),
    ],
)
def test_headline_rule_keeps_its_guards(signals: Signals) -> None:
    assert score(signals)[0] == "new"


def test_headline_rule_follows_the_table() -> None:
    """Raising the threshold in the table turns the rule off: no hidden constant."""
    strict = replace(DEFAULT_THRESHOLDS, title_only_join=DEFAULT_THRESHOLDS.join)
    assert score(SHORT_PAIR, strict)[0] == "new"


def test_single_evidence_headline_rule_unchanged() -> None:
    one = Signals(
        member_cosine=0.45, centroid_cosine=0.45, keyword=0.3, shared_terms=1, title_only=True
    )
    assert score(one)[0] == "similar"
    assert score(replace(one, keyword=0.0))[0] == "new"
