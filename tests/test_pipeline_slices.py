"""A cycle bigger than a slice: stored in several transactions, with backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import monitor.pipeline as pipeline
from monitor.config import load_config
from monitor.daemon import poll_once
from storage.store import Store
from tests.feedbuild import Item, LiveFeed, serve
from tests.feedserver import FeedServer


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(root=None) as srv:
        yield srv


def test_a_big_cycle_is_stored_in_slices_and_loses_nothing(
    tmp_path: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = [
        serve(
            server,
            f"/f/{i}",
            LiveFeed(
                f"Outlet {i}", [Item(f"g{i}-{k}", f"Ferry {i} route {k} reopens") for k in range(3)]
            ),
        )
        for i in range(11)
    ]
    feeds = "\n".join(f"  - url: {u}" for u in urls)
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"version: 1\nsettings:\n  database: sqlite:///{tmp_path / 'm.db'}\n  concurrency: 2\n"
        f"feeds:\n{feeds}\n"
    )
    slices: list[int] = []
    real_store_slice = pipeline.store_slice

    def recording(engine: Any, claims: Any, polls: Sequence[Any]) -> Any:
        slices.append(len(polls))
        return real_store_slice(engine, claims, polls)

    monkeypatch.setattr(pipeline, "STORE_SLICE", 3)
    monkeypatch.setattr(pipeline, "store_slice", recording)
    summary = asyncio.run(poll_once(load_config(path, env={}), deliver_timeout=5))
    assert "polled 11 feeds" in summary and "33 new articles" in summary, summary
    assert sum(slices) == 11 and len(slices) >= 3, slices
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    assert all(s.last_status == 200 for s in store.feeds.states())
    assert store.feeds.lease_owners() == set()  # every write ended its lease
    store.close()
