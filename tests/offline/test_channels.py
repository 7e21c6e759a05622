"""The channels built beside the embeddings: the harness's Item-CF map and the popular list, re-indexed to
an index's item order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offline.baselines.base import load_train_data
from offline.baselines.itemcf import fit_itemcf
from offline.jobs.channels import cooc_channel, dataset_channels, popular_channel
from tests.offline.eval_dataset import write_tiny_dataset


def test_cooc_channel_follows_the_index_item_order(tmp_path: Path) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    data = load_train_data(ds)
    reference = fit_itemcf(data, topn=5)
    assert reference.topn_ids is not None and reference.topn_scores is not None
    # the index holds the dataset's items reversed, minus the last one, plus an id the dataset lacks
    dropped = int(data.items[-1])
    items = np.concatenate([data.items[:-1][::-1], [10**9]])
    channel = cooc_channel(ds, items, topn=5)
    assert channel.topn_ids.shape == (len(items), 5)
    for row, item in enumerate(items[:-1]):
        src = int(np.flatnonzero(data.items == item)[0])
        want = [
            int(data.items[j]) for j in reference.topn_ids[src] if j >= 0 and int(data.items[j]) != dropped
        ]
        got = channel.topn_ids[row]
        assert [int(items[j]) for j in got if j >= 0] == want  # same neighbours, same order
        kept = [s for j, s in zip(reference.topn_ids[src], reference.topn_scores[src], strict=True)
                if j >= 0 and int(data.items[j]) != dropped]  # fmt: skip
        np.testing.assert_allclose(channel.topn_scores[row][got >= 0], kept)
        assert (got[len(want) :] == -1).all()  # holes of dropped items moved to the end
    assert (channel.topn_ids[-1] == -1).all()  # an item the dataset does not know has no neighbours


def test_popular_channel_is_one_shared_list_of_the_held_items_most_users_reached(tmp_path: Path) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    data = load_train_data(ds)
    users = np.array([len(set(data.user_rows[data.item_rows == r])) for r in range(data.n_items)])
    by_count = sorted(range(data.n_items), key=lambda r: (-int(users[r]), r))
    # the index lacks the most popular item and holds an id the dataset does not know
    items = np.concatenate([data.items[by_count[1:]][::-1], [10**9]])
    channel = popular_channel(ds, items, topn=data.n_items)
    assert channel.shared and channel.topn_ids.shape == (1, data.n_items)
    want = [int(data.items[r]) for r in by_count[1:]]  # most users first, ties by vocabulary row
    listed = channel.topn_ids[0]
    assert [int(items[j]) for j in listed if j >= 0] == want and listed[-1] == -1
    top = int(users[by_count[1]])
    np.testing.assert_allclose(channel.topn_scores[0][:-1], [users[r] / top for r in by_count[1:]])
    assert popular_channel(ds, items, topn=2).topn_ids.tolist() == [listed[:2].tolist()]
    assert sorted(dataset_channels(ds, items, topn=3)) == ["cooc", "popular"]
