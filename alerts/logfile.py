"""Log channel: the webhook body as one JSON line, appended to a file or written to stdout.

A file line is written with one ``write`` on a descriptor opened with ``O_APPEND`` and
then fsynced, so lines of concurrent writers never interleave and a line reported as
delivered survives a crash.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from alerts.render import json_bytes
from monitor.errors import DeliveryError


class LogSender:
    def __init__(self, path: Path | None = None, *, stream: TextIO | None = None) -> None:
        self._path = path
        self._stream = stream

    def __repr__(self) -> str:
        return f"LogSender(path={str(self._path) if self._path else 'stdout'!r})"

    async def send(self, event: str, delivery_id: str, body: Mapping[str, Any]) -> None:
        line = json_bytes(body) + b"\n"
        if self._path is None:
            self._write_stream(line)
        else:
            await asyncio.to_thread(self._append, self._path, line)

    def _write_stream(self, line: bytes) -> None:
        stream = self._stream or sys.stdout
        try:
            stream.write(line.decode("utf-8"))
            stream.flush()
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"cannot write alert to stdout: {exc}") from None

    @staticmethod
    def _append(path: Path, line: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DeliveryError(f"cannot open {path}: {exc.strerror}") from None
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise DeliveryError(f"short write to {path}: {written} of {len(line)} bytes")
            os.fsync(fd)
        except OSError as exc:
            raise DeliveryError(f"cannot write {path}: {exc.strerror}") from None
        finally:
            os.close(fd)
