"""The ``monitor`` command's entry point.

Importing the CLI makes ~100k objects (modules, classes, pydantic schemas) that live as
long as the process. Letting the cyclic collector run while they are made, and walk them
again in every later full collection, is wasted work: ~50 ms of a one-shot ``monitor
poll`` that answers 304s in under a second. So the collector waits for the imports, and
what they made is frozen (still freed by reference counting, never walked again).
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from monitor.cli import main as cli
    finally:
        gc.freeze()
        gc.enable()
    cli()
