"""The channels built beside the embeddings: the harness's Item-CF map, the popular list and the lists of
each category's most reached items, re-indexed to an index's item order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from offline.baselines.base import load_train_data
from offline.baselines.itemcf import fit_itemcf
from offline.jobs.channels import category_popular_channel, cooc_channel, dataset_channels, popular_channel
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
    assert sorted(dataset_channels(ds, items, topn=3)) == ["category_popular", "cooc", "popular"]


def test_category_channel_lists_the_triggers_category_by_reach_without_the_trigger(tmp_path: Path) -> None:
    ds = write_tiny_dataset(tmp_path / "ds")
    data = load_train_data(ds)
    categories = data.attributes["category"].copy()
    categories[0] = -1  # an item of unknown category: no list, and in no other item's list
    data = dataclasses.replace(data, attributes={"category": categories})
    users = np.array([len(set(data.user_rows[data.item_rows == r])) for r in range(data.n_items)])
    # the index holds the dataset's items reversed plus an id the dataset does not know
    items = np.concatenate([data.items[::-1], [10**9]])
    topn = 4
    channel = category_popular_channel(ds, items, topn=topn, data=data)
    assert channel is not None and channel.topn_ids.shape == (len(items), topn)
    for row, item in enumerate(items[:-1]):
        src = int(np.flatnonzero(data.items == item)[0])
        listed = [int(np.flatnonzero(data.items == items[j])[0]) for j in channel.topn_ids[row] if j >= 0]
        if categories[src] < 0:
            assert listed == []
            continue
        mates = [r for r in range(data.n_items) if categories[r] == categories[src] and r != src]
        assert listed == sorted(mates, key=lambda r: (-int(users[r]), r))[:topn]
        best = max(int(users[r]) for r in range(data.n_items) if categories[r] == categories[src])
        scores = channel.topn_scores[row][: len(listed)]
        np.testing.assert_allclose(scores, [users[r] / best for r in listed], rtol=1e-6)
        assert (channel.topn_ids[row][len(listed) :] == -1).all()
    assert (channel.topn_ids[-1] == -1).all()  # an item the dataset does not know has no list
    # six items per category (five in the one that lost item 0): at least four mates each, cut at topn 4
    lengths = (channel.topn_ids >= 0).sum(axis=1)
    assert set(lengths[:-2].tolist()) == {4} and lengths[-2] == 0  # index row -2 is dataset row 0
    assert category_popular_channel(ds, items, data=dataclasses.replace(data, attributes={})) is None
