"""The M2GRL batch function: prefetching gives the same stream; the prefetch helper's edge cases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from model.batches import BatchSettings, M2GRLInputs, make_batch_fn, prefetch
from tests.model.toy_inputs import item_view_alone, toy_inputs


def _inputs() -> M2GRLInputs:
    return toy_inputs()


def _flat(batches: Iterator) -> list[torch.Tensor]:  # type: ignore[type-arg]
    out = []
    for b in batches:
        for vb in b.views.values():
            out += [vb.centres, vb.contexts, vb.negatives]
        for rb in b.relations.values():
            out += [rb.items, rb.others, rb.negatives, rb.mask]
    return out


def test_prefetched_stream_equals_the_plain_one() -> None:
    settings = BatchSettings(window=3, batch_size=64, block_tokens=100)
    plain = make_batch_fn(_inputs(), settings, seed=3)
    ahead = make_batch_fn(_inputs(), replace(settings, prefetch=2), seed=3)
    for epoch in (0, 1):
        a, b = _flat(plain(epoch)), _flat(ahead(epoch))
        assert len(a) == len(b) > 0
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_prefetch_keeps_order_reraises_and_stops_early() -> None:
    assert list(prefetch(iter(range(50)), 3)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("boom")

    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for x in prefetch(failing(), 2):
            got.append(x)
    assert got == [1]

    produced = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), 2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the consumer stops: the producer must stop too
    n = len(produced)
    assert n <= 3 + 2 + 2
    with pytest.raises(ValueError, match="depth"):
        list(prefetch([1], 0))


def test_side_views_leave_the_item_views_stream_unchanged() -> None:
    """Each view draws from its own stream: the item pairs and negatives of a multi-view run are the
    ones a run of the item view alone draws."""
    full = _inputs()
    alone = item_view_alone(full)
    settings = BatchSettings(window=3, batch_size=64, block_tokens=100)
    for epoch in (0, 1):
        multi = list(make_batch_fn(full, settings, seed=5)(epoch))
        single = list(make_batch_fn(alone, settings, seed=5)(epoch))
        assert len(multi) == len(single) > 1
        for m, s in zip(multi, single, strict=True):
            assert set(m.views) == {"item", "category"} and set(m.relations) == {"item-category"}
            for name in ("centres", "contexts", "negatives"):
                assert torch.equal(getattr(m.views["item"], name), getattr(s.views["item"], name))
