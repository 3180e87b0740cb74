"""Batchyard's command line: `batchyard up` (a whole local stack), `batchyard controller`, `batchyard agent`."""

from __future__ import annotations
