"""Domain errors raised by ``index/``; only ``app/`` maps them to HTTP status codes."""

from __future__ import annotations


class IndexError_(Exception):
    """Base class of index errors (named with a trailing underscore to avoid the builtin)."""


class UnknownItem(IndexError_, KeyError):
    """An item id (or, in a version with labels, the user's own string id) that the index lacks."""

    def __init__(self, item_id: int | str) -> None:
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"item {self.item_id!r} is not in the index"


class UnknownMode(IndexError_, ValueError):
    def __init__(self, mode: str, available: list[str]) -> None:
        super().__init__(mode)
        self.mode = mode
        self.available = available

    def __str__(self) -> str:
        return f"mode {self.mode!r} is not served by this index; available: {self.available}"


class UnknownChannel(IndexError_, ValueError):
    """A mix names a channel the index version does not hold (e.g. built without ``cooc``)."""

    def __init__(self, version: str, missing: list[str], available: list[str]) -> None:
        super().__init__(missing)
        self.version = version
        self.missing = missing
        self.available = available

    def __str__(self) -> str:
        return f"index version {self.version} holds no channel {self.missing}; available: {self.available}"


class IndexNotReady(IndexError_, RuntimeError):
    """No valid index version is loaded."""


class DamagedIndex(IndexError_, RuntimeError):
    """A served version's memory-mapped files changed on disk after it was validated (ids overwritten
    in place, a file truncated or replaced): its answers cannot be trusted."""

    def __init__(self, version: str, detail: str) -> None:
        super().__init__(version, detail)
        self.version = version
        self.detail = detail

    def __str__(self) -> str:
        return f"index version {self.version} is damaged on disk: {self.detail}"


class InvalidIndexVersion(IndexError_, ValueError):
    """A version folder failed validation (missing marker, wrong shapes, NaNs, bad checksums...)."""


class InvalidArtifact(InvalidIndexVersion):
    """A source folder (model or metric artifact) given to the builder is broken: missing files, wrong
    shapes or dimensions, non-finite values, or ids that do not match. Nothing is published."""


class RecallTooLow(IndexError_, ValueError):
    """The approximate index misses too many exact neighbours: recall@K below the configured floor."""

    def __init__(self, mode: str, recall: float, floor: float, k: int) -> None:
        super().__init__(mode, recall, floor, k)
        self.mode = mode
        self.recall = recall
        self.floor = floor
        self.k = k

    def __str__(self) -> str:
        return (
            f"mode {self.mode!r}: recall@{self.k} vs exact search is {self.recall:.4f}, below the floor "
            f"{self.floor:.4f}; nothing published (raise ef_search / nprobe or use index_type='flat')"
        )


class UnknownIndexType(IndexError_, ValueError):
    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.available = available

    def __str__(self) -> str:
        return f"unknown index type {self.name!r}; valid: {self.available}"


class UnknownView(IndexError_, ValueError):
    """An attribute view (e.g. the category view used for exclusions) is not stored in the index."""

    def __init__(self, view: str, available: list[str]) -> None:
        super().__init__(view)
        self.view = view
        self.available = available

    def __str__(self) -> str:
        return f"attribute view {self.view!r} is not in the index; available: {self.available}"
