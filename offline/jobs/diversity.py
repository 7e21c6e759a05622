"""The diversity metric job (section 6.1): discovery pairs -> contrastive metric model -> ``MetricLayout``.

Training pairs, all from the ``train`` split of a dataset folder (``core.layout.DatasetLayout``):

- **Positives** are *real discoveries*: two items a user interacted with in succession (consecutive events
  of that user, within one session unless ``within_session=False``) whose categories differ. These are the
  transitions the diversity mode should reproduce: close in the instance view, different category.
- **Negatives** are sampled, ``negatives_per_positive`` per positive, anchored on a random end of the
  positive. A share ``hard_fraction`` of them are *hard*: a random other item of the anchor's own category,
  so the metric learns to push same-category items apart (they are what general neighbours over-serve).
  The rest are uniform random items. Negatives are redrawn every epoch from ``seed + epoch``.

Defaults (10% hard negatives, Adam 0.001) chosen on the MovieLens validation split by discovery
HitRate@50 of diversity mode (the Taobao one has too few discovery hits to choose by): reports/tuning.md,
section "diversity metric model".

The model (``model.metric.MultiViewMetric``) learns ``M_i = L_i^T L_i`` and ``M_ic = L_ic^T L_ic`` over the
frozen M2GRL representations ``e_i`` (``embeddings/item.npy``) and ``e_ic`` (``relational/item-category/
item.npy``), trained with the shared loop ``model.trainer.train``. The output folder holds ``z`` for every
item row, the factors and a manifest (``core.layout.MetricLayout``).
"""

from __future__ import annotations

import logging
import sys
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq
import torch

from core.atomic import atomic_dir, sha256_file
from core.layout import DatasetLayout, MetricLayout, ModelLayout, relation_name
from core.manifests import MetricManifest
from core.types import IntArray
from core.vocab import lookup
from model.artifact import M2GRLArtifact
from model.config import InstanceInput, MetricConfig, TrainerConfig
from model.distributed import DistInfo
from model.metric import MultiViewMetric, PairBatch
from model.trainer import train
from offline.jobs.train import check_resume

log = logging.getLogger(__name__)

FloatMatrix = npt.NDArray[np.float32]

#: Ways ``e_i`` enters equation 11 (see ``MetricConfig.instance_input``).
INSTANCE_INPUTS: tuple[str, ...] = typing.get_args(InstanceInput)


def instance_input(e_i: FloatMatrix, how: str) -> FloatMatrix:
    """Transform the instance-view embeddings before the metric (``MetricConfig.instance_input``).

    Returns float32 ``[n, dim]``.
    """
    if how not in INSTANCE_INPUTS:
        raise ValueError(f"unknown instance_input {how!r}; valid: {list(INSTANCE_INPUTS)}")
    e = np.asarray(e_i, dtype=np.float64)
    if how == "normalized":
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(e, dtype=np.float32)


# --------------------------------------------------------------------------------------------- pairs


def discovery_pairs(
    user: IntArray, group: IntArray, row: IntArray, category: IntArray
) -> tuple[IntArray, IntArray]:
    """Positive pairs: consecutive events of one group whose items are known and categories differ.

    Args:
        user: ``[n]`` user id per event, events already sorted by (user, time).
        group: ``[n]`` grouping key that must also match (the session, or ``user`` again).
        row: ``[n]`` item vocabulary row per event, ``-1`` when the item is not in the vocabulary.
        category: ``[n]`` category id per event, ``-1`` when unknown.
    Returns:
        ``(a, b)``: item rows of each pair (``a`` first in time), int64.
    """
    n = len(row)
    if not (len(user) == len(group) == len(category) == n):
        raise ValueError("user, group, row and category must have the same length")
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    a, b = row[:-1], row[1:]
    ca, cb = category[:-1], category[1:]
    keep = (
        (user[:-1] == user[1:])
        & (group[:-1] == group[1:])
        & (a >= 0)
        & (b >= 0)
        & (ca >= 0)
        & (cb >= 0)
        & (ca != cb)
    )
    return a[keep].astype(np.int64), b[keep].astype(np.int64)


def dedupe_unordered(a: IntArray, b: IntArray) -> tuple[IntArray, IntArray]:
    """Keep each unordered pair ``{a, b}`` once (as ``(min, max)``), sorted."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    uniq = np.unique(np.stack([lo, hi], axis=1), axis=0)
    return uniq[:, 0].astype(np.int64), uniq[:, 1].astype(np.int64)


def sample_negatives(
    anchors: IntArray,
    item_category: IntArray,
    *,
    hard_fraction: float,
    rng: np.random.Generator,
) -> IntArray:
    """One negative partner per anchor row.

    A share ``hard_fraction`` (Bernoulli per anchor) is drawn uniformly among the *other* items of the
    anchor's category; anchors whose category is unknown or has a single item fall back to a uniform draw.
    The rest are uniform over all items (a uniform draw may rarely hit the anchor itself; with thousands
    of items this is noise and keeping it avoids a rejection loop).

    Args:
        anchors: ``[n]`` item rows.
        item_category: ``[num_items]`` category id per item row (``-1`` unknown).
    Returns:
        ``[n]`` int64 partner rows.
    """
    num_items = len(item_category)
    if num_items < 2:
        raise ValueError(f"need at least 2 items to sample negatives, got {num_items}")
    partners = rng.integers(0, num_items, size=len(anchors), dtype=np.int64)
    if hard_fraction <= 0 or len(anchors) == 0:
        return partners
    # Items grouped by category: members of category c are order[start[c] : start[c] + size[c]].
    order = np.argsort(item_category, kind="stable")
    sorted_cat = item_category[order]
    uniq, start, size = np.unique(sorted_cat, return_index=True, return_counts=True)
    anchor_cat = item_category[anchors]
    slot = np.searchsorted(uniq, anchor_cat)
    cat_size = size[slot]
    hard = (rng.random(len(anchors)) < hard_fraction) & (anchor_cat >= 0) & (cat_size >= 2)
    if not hard.any():
        return partners
    # Position of the anchor inside its category block, then a uniform offset in [1, size-1] so the
    # partner is never the anchor itself.
    position_of = np.empty(num_items, dtype=np.int64)
    position_of[order] = np.arange(num_items) - start[np.searchsorted(uniq, sorted_cat)]
    h_size = cat_size[hard]
    offset = 1 + (rng.random(hard.sum()) * (h_size - 1)).astype(np.int64)
    pos = (position_of[anchors[hard]] + offset) % h_size
    partners[hard] = order[start[slot[hard]] + pos]
    return partners


def epoch_pairs(
    pos_a: IntArray,
    pos_b: IntArray,
    item_category: IntArray,
    *,
    negatives_per_positive: int,
    hard_fraction: float,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray, npt.NDArray[np.float32]]:
    """All labelled pairs of one epoch: the positives plus freshly drawn negatives, shuffled.

    Returns ``(a, b, label)`` with ``label`` 1.0 for positives and 0.0 for negatives.
    """
    reps = negatives_per_positive
    a_rep, b_rep = np.tile(pos_a, reps), np.tile(pos_b, reps)
    anchors = np.where(rng.random(len(a_rep)) < 0.5, a_rep, b_rep)
    partners = sample_negatives(anchors, item_category, hard_fraction=hard_fraction, rng=rng)
    a = np.concatenate([pos_a, anchors])
    b = np.concatenate([pos_b, partners])
    label = np.concatenate([np.ones(len(pos_a), np.float32), np.zeros(len(anchors), np.float32)])
    perm = rng.permutation(len(a))
    return a[perm], b[perm], label[perm]


def pair_batches(
    a: IntArray, b: IntArray, label: npt.NDArray[np.float32], batch_size: int
) -> Iterator[PairBatch]:
    """Cut (already shuffled) pairs into ``PairBatch`` tensors of at most ``batch_size`` rows."""
    ta, tb, ty = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(label)
    for lo in range(0, len(a), batch_size):
        yield PairBatch(ta[lo : lo + batch_size], tb[lo : lo + batch_size], ty[lo : lo + batch_size])


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class MetricInputs:
    """Everything the job reads, as arrays: item representations, categories and positive pairs."""

    e_i: npt.NDArray[np.float32]  # [num_items, dim_i]
    e_ic: npt.NDArray[np.float32]  # [num_items, dim_ic]
    item_category: IntArray  # [num_items] original category id, -1 unknown
    pos_a: IntArray
    pos_b: IntArray
    train_events: int


def _read_train_events(dataset: DatasetLayout) -> dict[str, np.ndarray]:
    if not dataset.events.exists():
        raise FileNotFoundError(f"dataset events not found: {dataset.events}")
    table = pq.read_table(
        dataset.events,
        columns=["user_id", "item_id", "timestamp", "session", "split"],
        filters=[("split", "==", "train")],
    )
    df = table.to_pandas()
    df = df.sort_values(["user_id", "timestamp", "session"], kind="stable")
    return {
        "user": df["user_id"].to_numpy(np.int64),
        "item": df["item_id"].to_numpy(np.int64),
        "session": df["session"].to_numpy(np.int64),
    }


def load_inputs(dataset_dir: Path, model_dir: Path, config: MetricConfig) -> MetricInputs:
    """Read the M2GRL representations and build the positive pairs from the train split."""
    model = M2GRLArtifact.load(Path(model_dir), mmap=True)  # ArtifactError names a broken file
    rel = relation_name(config.item_view, config.category_view)
    if config.item_view not in model.views or rel not in model.relational:
        raise ValueError(f"model folder {model_dir} lacks the relation {rel} that the metric model reads")
    if config.category_view not in model.attributes:
        raise ValueError(f"model folder {model_dir} lacks attributes/{config.category_view}.npy")
    e_i = np.array(model.embeddings[config.item_view], dtype=np.float32)  # a writable copy for torch
    e_ic = np.array(model.relational[rel][config.item_view], dtype=np.float32)
    vocab = model.vocab[config.item_view].astype(np.int64)
    item_category = model.attributes[config.category_view].astype(np.int64)
    events = _read_train_events(DatasetLayout(Path(dataset_dir)))
    row = lookup(events["item"], vocab)
    # The category of an event is the item's category in the model's attribute table, the same one
    # the index serves and the filters use.
    category = np.where(row >= 0, item_category[np.maximum(row, 0)], -1)
    group = events["session"] if config.within_session else events["user"]
    pos_a, pos_b = discovery_pairs(events["user"], group, row, category)
    if config.dedupe_positives:
        pos_a, pos_b = dedupe_unordered(pos_a, pos_b)
    if config.max_positives is not None and len(pos_a) > config.max_positives:
        keep = np.random.default_rng(config.seed).choice(len(pos_a), config.max_positives, replace=False)
        keep.sort()
        pos_a, pos_b = pos_a[keep], pos_b[keep]
    return MetricInputs(e_i, e_ic, item_category, pos_a, pos_b, train_events=len(row))


def initial_scales(
    e_i: npt.NDArray[np.float32],
    e_ic: npt.NDArray[np.float32],
    *,
    margin: float,
    ic_share: float,
    rng: np.random.Generator,
    sample: int = 4096,
) -> tuple[float, float]:
    """Scales ``s_i``, ``s_ic`` of the identity start ``L = s I``.

    With ``D_v`` the median squared distance of random item pairs in view ``v``, the start metric gives
    ``s_i^2 D_i = (1 - ic_share) * margin`` and ``s_ic^2 D_ic = ic_share * margin``: a random pair starts
    about at the margin, so both terms of equation 12 are active from the first step.
    """
    n = len(e_i)
    a, b = rng.integers(0, n, size=sample), rng.integers(0, n, size=sample)
    d_i = float(np.median(((e_i[a] - e_i[b]) ** 2).sum(1)))
    d_ic = float(np.median(((e_ic[a] - e_ic[b]) ** 2).sum(1)))
    s_i = float(np.sqrt((1.0 - ic_share) * margin / d_i)) if d_i > 0 else 1.0
    s_ic = float(np.sqrt(ic_share * margin / d_ic)) if d_ic > 0 and ic_share > 0 else 0.0
    return s_i, s_ic


def build_model(inputs: MetricInputs, config: MetricConfig) -> MultiViewMetric:
    """Factory: the metric model for these inputs and this config."""
    e_i = instance_input(inputs.e_i, config.instance_input)
    s_i, s_ic = initial_scales(
        e_i,
        inputs.e_ic,
        margin=config.margin,
        ic_share=config.init_ic_share,
        rng=np.random.default_rng(config.seed),
    )
    torch.manual_seed(config.seed)
    return MultiViewMetric(
        torch.from_numpy(np.ascontiguousarray(e_i, dtype=np.float32)),
        torch.from_numpy(inputs.e_ic),
        margin=config.margin,
        rank_i=config.rank_i,
        rank_ic=config.rank_ic,
        init_scale_i=s_i,
        init_scale_ic=s_ic,
    )


# --------------------------------------------------------------------------------------------- job


def psd_min_eigenvalues(model: MultiViewMetric) -> tuple[float, float]:
    """Smallest eigenvalue of ``M_i`` and ``M_ic`` (>= -1e-6 up to float error: they are ``L^T L``)."""
    with torch.no_grad():
        m_i, m_ic = model.metric_matrices()
        return (
            float(torch.linalg.eigvalsh(m_i.double()).min()),
            float(torch.linalg.eigvalsh(m_ic.double()).min()),
        )


def diversity_embeddings(model: MultiViewMetric, chunk: int = 65536) -> npt.NDArray[np.float32]:
    """``z`` for every item row, ``[num_items, rank_i + rank_ic]`` float32 (computed in chunks)."""
    with torch.no_grad():
        parts = [
            model.embed(torch.arange(lo, min(lo + chunk, model.num_items))).numpy()
            for lo in range(0, model.num_items, chunk)
        ]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def epoch_batches(inputs: MetricInputs, config: MetricConfig) -> Callable[[int], Iterator[PairBatch]]:
    """The batch function of the shared trainer: epoch number -> shuffled ``PairBatch`` stream.

    Negatives are redrawn each epoch from ``seed + epoch``, so a resumed run sees the same pairs.
    """

    def batches(epoch: int) -> Iterator[PairBatch]:
        rng = np.random.default_rng(config.seed + epoch)
        a, b, label = epoch_pairs(
            inputs.pos_a,
            inputs.pos_b,
            inputs.item_category,
            negatives_per_positive=config.negatives_per_positive,
            hard_fraction=config.hard_fraction,
            rng=rng,
        )
        return pair_batches(a, b, label, config.batch_size)

    return batches


def _fit(
    model: MultiViewMetric, inputs: MetricInputs, config: MetricConfig, *, checkpoints: Path, resume: bool
) -> list[float]:
    """Optimise the factors with the shared loop (``model.trainer.train``: Adam on the dense factors,
    per-epoch checkpoints in ``checkpoints``, progress); returns the mean loss of every epoch.

    No gradient clipping: the metric model's defaults were chosen without it (reports/tuning.md)."""
    trainer = TrainerConfig(
        lr=config.lr, weight_decay=config.weight_decay, grad_clip=0.0, epochs=config.epochs,
        seed=config.seed, device="cpu",
    )  # fmt: skip
    pairs_per_epoch = len(inputs.pos_a) * (1 + config.negatives_per_positive)
    result = train(
        model,
        epoch_batches(inputs, config),
        trainer,
        checkpoint_dir=checkpoints,
        resume=resume,
        progress=sys.stderr.isatty(),
        steps_per_epoch=-(-pairs_per_epoch // config.batch_size),
        description="metric model",
    )
    return result.epoch_losses["total"]


def input_checksums(dataset_dir: Path, model_dir: Path, config: MetricConfig) -> dict[str, str]:
    """sha256 of what the metric model reads (events, the model's item and relational vectors)."""
    model = ModelLayout(model_dir)
    rel = relation_name(config.item_view, config.category_view)
    paths = {
        "dataset/events.parquet": DatasetLayout(dataset_dir).events,
        f"model/embeddings/{config.item_view}.npy": model.embeddings(config.item_view),
        f"model/relational/{rel}/{config.item_view}.npy": model.relational(rel, config.item_view),
    }
    return {name: sha256_file(path) for name, path in paths.items()}


def train_metric_model(
    dataset_dir: Path,
    model_dir: Path,
    output_dir: Path,
    config: MetricConfig,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Train the diversity metric model and write a ``MetricLayout`` folder atomically.

    Args:
        dataset_dir: a ``DatasetLayout`` folder (its train split gives the discovery pairs).
        model_dir: a ``ModelLayout`` folder of a trained M2GRL (``e_i``, ``e_ic``, vocab, categories).
        output_dir: the metric folder to write (``diversity.npy``, ``L_i.npy``, ``L_ic.npy``, manifest).
        config: a validated :class:`MetricConfig`.
        overwrite: replace an existing ``output_dir``.
        resume: continue from the newest per-epoch checkpoint (kept next to ``output_dir``; refused when
            it was written for another config or other inputs).
    Returns:
        ``output_dir``. Raises ``FileExistsError`` (exists, no overwrite), ``FileNotFoundError``
        (missing input) or ``ValueError`` (no discovery pair, inconsistent inputs).
    """
    dataset_dir, model_dir, output_dir = Path(dataset_dir), Path(model_dir), Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} already exists (pass overwrite=True to replace it)")
    started = time.time()
    inputs = load_inputs(dataset_dir, model_dir, config)
    if len(inputs.pos_a) == 0:
        raise ValueError(
            f"no discovery pair in the train split of {dataset_dir}: no user clicked two known items of "
            f"different categories in succession (within_session={config.within_session})"
        )
    log.info("metric model: %d positive pairs from %d train events", len(inputs.pos_a), inputs.train_events)
    model = build_model(inputs, config)
    checksums = input_checksums(dataset_dir, model_dir, config)
    checkpoints = ModelLayout(output_dir).checkpoints
    checkpoints.mkdir(parents=True, exist_ok=True)
    resumable = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    check_resume(checkpoints, {"config": resumable, "inputs_sha256": checksums}, resume, DistInfo())
    history = _fit(model, inputs, config, checkpoints=checkpoints, resume=resume)
    z = diversity_embeddings(model)
    eig_i, eig_ic = psd_min_eigenvalues(model)
    manifest = MetricManifest(
        paper="M2GRL section 6.1, equations 11-12",
        source_model=str(model_dir.resolve()),
        source_dataset=str(dataset_dir.resolve()),
        config=config.to_dict(),
        inputs_sha256=checksums,
        counts={
            "items": model.num_items,
            "train_events": inputs.train_events,
            "positive_pairs": len(inputs.pos_a),
            "pairs_per_epoch": len(inputs.pos_a) * (1 + config.negatives_per_positive),
        },
        dims={"e_i": int(model.L_i.shape[1]), "e_ic": int(model.L_ic.shape[1]), "z": int(z.shape[1])},
        z_input={"instance": config.instance_input, "relational": "e_ic as stored"},
        min_eigenvalue={"M_i": eig_i, "M_ic": eig_ic},
        history=history,
        versions={"torch": torch.__version__, "numpy": np.__version__},
        seconds=round(time.time() - started, 3),
    )
    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        layout = MetricLayout(tmp)
        np.save(layout.diversity, z)
        np.save(layout.factor("i"), model.L_i.detach().numpy().astype(np.float32))
        np.save(layout.factor("ic"), model.L_ic.detach().numpy().astype(np.float32))
        manifest.write(layout.manifest)
    for old in checkpoints.glob("*"):
        old.unlink()
    checkpoints.rmdir()
    return output_dir
