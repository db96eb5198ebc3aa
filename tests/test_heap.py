"""The C heap's tuning (glibc): free pages go back, and big blocks stay mappings of their
own after a big one was freed."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from monitor import heap
from monitor.heap import fix_mmap_threshold, release_free_memory

# the module's own lookup: None off Linux and where there is no libc.so.6 (musl)
glibc_only = pytest.mark.skipif(
    heap._libc_function("malloc_trim") is None, reason="glibc's malloc only"
)


def test_the_heap_calls_run_anywhere() -> None:
    release_free_memory()
    fix_mmap_threshold()  # glibc's own starting value: changes nothing else here
    release_free_memory()


@glibc_only
def test_on_glibc_the_calls_reach_libc() -> None:
    assert heap._libc_function("mallopt") is not None
    assert heap._libc_function("malloc_trim") is not None


# In a fresh interpreter: how many bytes of mappings of their own (mallinfo2's hblkhd) a
# 256 KiB block gets right after a 1 MiB one was freed, with the threshold fixed or not.
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from monitor.heap import fix_mmap_threshold

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "fixed":
        fix_mmap_threshold()
    big = libc.malloc(1 << 20)
    libc.free(big)
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(256 << 10)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(block)
    print(mapped)
    """
)


def _mapped_after_a_big_free(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return int(done.stdout)


@glibc_only
def test_a_freed_big_block_does_not_raise_the_mmap_threshold_once_fixed() -> None:
    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except AttributeError:
        pytest.skip("glibc < 2.33 has no mallinfo2")
    # glibc's own way: freeing the 1 MiB mapping raised the threshold past 256 KiB
    assert _mapped_after_a_big_free("dynamic") == 0
    # fixed: the 256 KiB block is a mapping of its own, its pages go back when freed
    assert _mapped_after_a_big_free("fixed") >= 256 * 1024
