"""Batchyard node agent: a Celery worker that claims task attempts and runs them."""

from __future__ import annotations

__version__ = "0.1.0"
