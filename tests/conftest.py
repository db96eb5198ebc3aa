"""Shared fixtures: paths to the shared data, real databases."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FEEDS_DIR = SHARED_DATA / "feeds"
CLUSTERING_DIR = SHARED_DATA / "clustering"
