"""Opaque ids: a prefix and random bits, assigned once and never reused."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """Return e.g. ``s_3f9a...``; 96 random bits make collisions irrelevant."""
    return f"{prefix}_{secrets.token_hex(12)}"
