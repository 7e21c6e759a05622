"""Channel mixes through the service: a variant's mix answers as ``ServingIndex.mixed_neighbours``
does, candidates name their channels, ``/metrics`` counts them, and a version without a channel a
variant names is refused until one with it is published (hot swap)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from core.layout import IndexRoot
from index.build import build_index
from index.inputs import ChannelInput
from index.publish import publish
from index.serving import ServingIndex
from tests.app.conftest import (
    CATEGORIES,
    INDEX_CONFIG,
    ITEM_IDS,
    N_ITEMS,
    make_settings,
    vectors_for,
    write_model_and_metric,
)

ADMIN = {"Authorization": "Bearer s3cret"}
BLEND = {"m2grl": 0.5, "cooc": 0.5}
TRIGGER = int(ITEM_IDS[0])


def cooc_map() -> ChannelInput:
    """Each item's co-occurring items: the next three of its category (rows +6, +12, +18)."""
    rows = np.arange(N_ITEMS)
    ids = np.stack([(rows + step) % N_ITEMS for step in (6, 12, 18)], axis=1).astype(np.int32)
    return ChannelInput(ids, np.tile(np.float32([0.9, 0.5, 0.1]), (N_ITEMS, 1)), "test")


def build_with_cooc(index_root: Path, tmp_path: Path, version: str) -> None:
    model_dir, metric_dir = write_model_and_metric(tmp_path / version, vectors_for(3))
    build_index(
        model_dir, index_root, INDEX_CONFIG, metric_dir=metric_dir, version=version, publish=False,
        progress=False, channels={"cooc": cooc_map()}, default_mix={"m2grl": 1.0, "cooc": 1.0},
    )  # fmt: skip


def channel_count(metrics: str, channel: str, variant: str) -> float:
    pattern = rf'm2grl_candidates_by_channel_total\{{channel="{channel}",variant="{variant}"\}} (\S+)'
    match = re.search(pattern, metrics)
    return float(match.group(1)) if match else 0.0


def test_a_variant_mix_is_served_hot_swapped_and_counted(
    index_root: Path, tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    experiment = {
        "variants": [{"name": "control", "weight": 1.0}, {"name": "blend", "weight": 0.0, "channels": BLEND}]
    }
    client = client_for(make_settings(index_root, experiment=experiment))
    # CURRENT (v1) was built without the cooc channel that "blend" names: refused, not ready
    assert client.get("/readyz").status_code == 503
    assert "holds no channel ['cooc']" in client.get("/readyz").json()["detail"]

    build_with_cooc(index_root, tmp_path, "v3")
    publish(index_root, "v3")
    assert client.post("/admin/reload", headers=ADMIN).json()["result"] == "success"
    assert client.get("/readyz").status_code == 200

    index = ServingIndex.load(IndexRoot(index_root).version("v3").root)
    body = client.get(f"/i2i/{TRIGGER}?k=8", headers={"X-Variant": "blend"}).json()
    want = index.mixed_neighbours(TRIGGER, BLEND, 8)
    assert [c["item_id"] for c in body["candidates"]] == want.item_ids
    assert [c["channels"] for c in body["candidates"]] == want.channels
    cooc_items = {int(ITEM_IDS[r]) for r in (6, 12, 18)}
    assert {c["item_id"] for c in body["candidates"] if "cooc" in c["channels"]} == cooc_items

    # the control variant names no mix: the version's default mix (m2grl 1, cooc 1)
    control = client.get(f"/i2i/{TRIGGER}?k=8", headers={"X-Variant": "control"}).json()
    default = index.mixed_neighbours(TRIGGER, None, 8)
    assert [c["item_id"] for c in control["candidates"]] == default.item_ids

    # exclusions apply after the merge: the trigger's category (its cooc items' too) is gone
    own = int(CATEGORIES[0])
    excluded = client.get(
        f"/i2i/{TRIGGER}?k=8&exclude_categories={own}", headers={"X-Variant": "blend"}
    ).json()
    assert len(excluded["candidates"]) == 8
    assert all(
        c["attributes"]["category"] != own and c["channels"] == ["m2grl"] for c in excluded["candidates"]
    )

    # diversity mode does not merge channels
    diversity = client.get(f"/i2i/{TRIGGER}?k=3&mode=diversity", headers={"X-Variant": "blend"}).json()
    assert all("channels" not in c or c["channels"] is None for c in diversity["candidates"])

    batch = client.post(
        "/i2i:batch", json={"item_ids": [TRIGGER], "k": 8}, headers={"X-Variant": "blend"}
    ).json()
    assert [c["item_id"] for c in batch["results"][0]["candidates"]] == want.item_ids
    u2i = client.get(f"/u2i?recent_items={TRIGGER}&k=8", headers={"X-Variant": "blend"}).json()
    assert {c["item_id"] for c in u2i["candidates"] if "cooc" in c["channels"]} == cooc_items

    metrics = client.get("/metrics").text
    # blend: the /i2i answer, the filtered answer (no cooc), the batch and the u2i answer
    assert channel_count(metrics, "cooc", "blend") == 3 * len(cooc_items)
    served_m2grl = sum(
        "m2grl" in c["channels"]
        for answer in (body["candidates"], excluded["candidates"], batch["results"][0]["candidates"],
                       u2i["candidates"])
        for c in answer
    )  # fmt: skip
    assert channel_count(metrics, "m2grl", "blend") == served_m2grl
    assert channel_count(metrics, "m2grl", "control") == sum("m2grl" in c for c in default.channels or [])
