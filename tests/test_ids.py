"""Ids: unique, of the documented form, and never repeated across a fork."""

from __future__ import annotations

import os
import re

import pytest

from monitor.ids import new_id


def test_ids_have_a_prefix_and_96_random_bits() -> None:
    ident = new_id("s")
    assert re.fullmatch(r"s_[0-9a-f]{24}", ident)


def test_ids_are_unique_across_many_pool_refills() -> None:
    made = [new_id("a") for _ in range(20_000)]  # dozens of 4 KB blocks
    assert len(set(made)) == len(made)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    new_id("a")  # the pool now holds bytes the parent has not used yet
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read_end)
        os.write(write_end, " ".join(new_id("a") for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_id("a") for _ in range(3)]
    assert len(child) == 3
    assert not set(child) & set(parent)
