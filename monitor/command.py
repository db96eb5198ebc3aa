"""The ``monitor`` command's entry point.

Importing the CLI makes ~100k objects (modules, classes, pydantic schemas) that live as
long as the process. Letting the cyclic collector run while they are made, and walk them
again in every later full collection, is wasted work: ~50 ms of a one-shot ``monitor
poll`` that answers 304s in under a second. So the collector waits for the imports, and
what they made is frozen (still freed by reference counting, never walked again).
"""

from __future__ import annotations

import atexit
import gc

YOUNG_GC_THRESHOLD = 10_000  # allocations between young collections (default 700)


def main() -> None:
    gc.disable()
    try:
        from monitor.cli import main as cli
    finally:
        gc.freeze()
        # the command's own imports (the daemon's, on first use) and a cycle's millions
        # of short-lived objects: collecting every 700 allocations walked them ~150
        # times in a one-shot poll of 304s, and took ~0.2 s of a 200-feed cold poll
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        gc.enable()
    # the collections Python runs while it tears down would walk every object once
    # more (~0.1 s of each command); frozen objects are still freed, just not walked
    atexit.register(gc.freeze)
    cli()
