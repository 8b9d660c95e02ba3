"""The JSON-lines records the bench scripts append (bench/*.sh), read back for the tables."""

from __future__ import annotations

import json
from collections.abc import Iterator


def records(paths: list[str]) -> Iterator[dict]:
    """Every record of every file, in order (blank lines skipped)."""
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
