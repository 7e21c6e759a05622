"""Domain errors raised by ``index/``; only ``app/`` maps them to HTTP status codes."""

from __future__ import annotations


class IndexError_(Exception):
    """Base class of index errors (named with a trailing underscore to avoid the builtin)."""


class UnknownItem(IndexError_, KeyError):
    def __init__(self, item_id: int) -> None:
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"item {self.item_id} is not in the index"


class UnknownMode(IndexError_, ValueError):
    def __init__(self, mode: str, available: list[str]) -> None:
        super().__init__(mode)
        self.mode = mode
        self.available = available

    def __str__(self) -> str:
        return f"mode {self.mode!r} is not served by this index; available: {self.available}"


class IndexNotReady(IndexError_, RuntimeError):
    """No valid index version is loaded."""


class InvalidIndexVersion(IndexError_, ValueError):
    """A version folder failed validation (missing marker, wrong shapes, NaNs, bad checksums...)."""
