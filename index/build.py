"""``build_index``: model (and metric) folder -> one validated, atomically written index version, then
published (section 4 of the paper: offline "I2I similarity maps" per downstream task).

Per mode (``general``: inner product over instance-view embeddings; ``diversity``: L2 over the metric
model's z), the builder makes a FAISS index from the registry, computes the top-N map for every item by
batched multi-threaded searches, measures recall@K of the map against exact search on a sample, and
refuses (nothing written, nothing published) when recall is below the floor.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from core.atomic import atomic_dir
from core.layout import DatasetLayout, IndexRoot, IndexVersionLayout
from core.manifests import INDEX_FORMAT, IndexManifest
from core.types import IntArray, Mode
from index.channels import CHANNEL_MODES, FUSED, check_mix, fused_map
from index.config import IndexConfig
from index.device import faiss_threads, resolve_device, to_cpu, to_device
from index.errors import InvalidArtifact, InvalidIndexVersion, RecallTooLow
from index.explorer import catalogue_dataset, write_explorer
from index.inputs import (
    BuildInputs,
    ChannelInput,
    ColdInput,
    ModeInput,
    read_inputs,
    require_complete,
    with_cold,
)
from index.labels import write_labels
from index.manifest import describe_files
from index.publish import check_version_name, prune
from index.publish import publish as publish_version
from index.registry import effective_nlist, resolve_index_type
from index.serving import ServingIndex
from index.topn import build_topn_map, drop_own_group_in_place, recall_at_k

log = logging.getLogger(__name__)

FLOAT16_MAX = float(np.finfo(np.float16).max)
#: Vectors added per call (progress granularity).
_ADD_ROWS = 1 << 16
#: The view whose value the diversity map leaves out of each item's neighbours: diversity answers never
#: hold the trigger's own category (the service's default category view), so the map need not either.
DIVERSITY_EXCLUDES = "category"


#: Computes the map-only channels of a version from its item ids (rows in index order).
ChannelBuilder = Callable[[npt.NDArray[np.int64]], Mapping[str, ChannelInput]]
#: Places the catalogue items the model has no row for, from the validated model inputs (None: none).
ColdBuilder = Callable[[BuildInputs], ColdInput | None]


def new_version_name(index_root: Path, now: datetime | None = None) -> str:
    """UTC timestamp ``YYYYmmddTHHMMSSZ``, with ``-1``, ``-2``... appended when already taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    versions = IndexRoot(Path(index_root)).versions
    name, i = stamp, 0
    while (versions / name).exists():
        i += 1
        name = f"{stamp}-{i}"
    return name


def _train_sample(vectors: npt.NDArray[np.float32], size: int, seed: int) -> npt.NDArray[np.float32]:
    n = len(vectors)
    if n <= size:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return np.ascontiguousarray(vectors[rows])


def build_mode(
    layout: IndexVersionLayout,
    mode: str,
    data: ModeInput,
    config: IndexConfig,
    device: str,
    progress: bool,
    own_group: tuple[str, IntArray] | None = None,
) -> dict[str, Any]:
    """Build one mode into ``layout`` (index.faiss, topn_ids.npy, topn_scores.npy); returns its manifest
    entry. Raises ``RecallTooLow`` when the map's recall@``recall_k`` is below ``recall_floor``.

    ``own_group`` = ``(view, attribute per row)``: the map leaves out each item's neighbours that share
    its attribute in that view (``excludes_own`` in the entry), for a mode that never serves them (the
    diversity mode excludes the trigger's category); the recall check reads the full search first."""
    t0 = time.perf_counter()
    x = data.vectors
    n, dim = x.shape
    kind = resolve_index_type(config.index_type, n)
    params = config.params
    kind.check(dim, n, params)
    cpu_index = kind.make(dim, data.metric, n, params)
    index, resources = to_device(cpu_index, device, kind.name)
    if not index.is_trained:
        nlist = effective_nlist(n, params)
        # k-means wants 39-256 points per centroid (64 keeps 1M-item training in minutes); PQ codebooks
        # want 39 per code.
        size = max(64 * nlist, 39 * 2**params.pq_nbits)
        index.train(_train_sample(x, size, config.seed))
    with tqdm(total=n, desc=f"{mode}: add", unit="item", disable=not progress, leave=False) as bar:
        for start in range(0, n, _ADD_ROWS):
            index.add(x[start : start + _ADD_ROWS])
            bar.update(min(_ADD_ROWS, n - start))
    t_add = time.perf_counter()

    search_params = (
        None if resources is not None else kind.search_params(index, params, config.topn + 1, False)
    )
    if resources is not None and kind.name.startswith("ivf"):
        faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", params.nprobe)
    layout.topn_ids(mode).parent.mkdir(parents=True, exist_ok=True)
    ids_out = np.lib.format.open_memmap(
        layout.topn_ids(mode), mode="w+", dtype=np.int32, shape=(n, config.topn)
    )
    scores_out = np.lib.format.open_memmap(
        layout.topn_scores(mode), mode="w+", dtype=np.float16, shape=(n, config.topn)
    )
    build_topn_map(
        index,
        x,
        config.topn,
        data.metric,
        params=search_params,
        batch_size=config.batch_size,
        out_ids=ids_out,
        out_scores=scores_out,
        progress=progress,
        desc=f"{mode}: top-{config.topn} map",
    )
    worst = 0.0
    for start in range(0, n, 1 << 16):
        block = np.asarray(scores_out[start : start + (1 << 16)], dtype=np.float32)
        finite = np.isfinite(block) | (np.asarray(ids_out[start : start + (1 << 16)]) < 0)
        if not finite.all():
            raise InvalidArtifact(
                f"{data.source}: neighbour scores exceed the float16 range (|score| > {FLOAT16_MAX:.0f}); "
                "rescale or normalise the vectors"
            )
        worst = max(worst, float(np.nanmax(np.abs(np.where(np.isfinite(block), block, 0.0)), initial=0.0)))
    t_map = time.perf_counter()

    rng = np.random.default_rng(config.seed)
    sample = np.sort(rng.choice(n, size=min(n, config.recall_queries), replace=False)).astype(np.int64)
    recall = recall_at_k(x, sample, np.asarray(ids_out[sample], dtype=np.int64), config.recall_k, data.metric)
    log.info("%s: %s index, recall@%d vs exact = %.4f", mode, kind.name, config.recall_k, recall)
    if recall < config.recall_floor:
        raise RecallTooLow(mode, recall, config.recall_floor, config.recall_k)
    if own_group is not None:
        drop_own_group_in_place(ids_out, scores_out, np.asarray(own_group[1], dtype=np.int64))
    ids_out.flush()
    scores_out.flush()
    del ids_out, scores_out
    faiss.write_index(to_cpu(index, resources), str(layout.faiss_index(mode)))
    used = params.to_dict()
    if kind.name.startswith("ivf"):
        used["nlist"] = effective_nlist(n, params)
    return {
        "metric": data.metric,
        "dim": int(dim),
        "index_type": kind.name,
        "requested_index_type": config.index_type,
        "params": used,
        "topn": config.topn,
        **({"excludes_own": own_group[0]} if own_group is not None else {}),
        "recall_k": config.recall_k,
        "recall": recall,
        "recall_queries": len(sample),
        "max_abs_score": worst,
        "device": device if resources is not None else "cpu",
        "source": data.source,
        "seconds": {"add": t_add - t0, "map": t_map - t_add, "total": time.perf_counter() - t0},
    }


def write_channel(layout: IndexVersionLayout, name: str, channel: ChannelInput) -> dict[str, Any]:
    """Write a map-only channel (``topn_ids.npy`` int32, ``topn_scores.npy`` float16) into ``layout``;
    returns its manifest entry."""
    scores = np.where(channel.topn_ids >= 0, channel.topn_scores, 0.0)
    if float(np.abs(scores).max(initial=0.0)) > FLOAT16_MAX:
        raise InvalidArtifact(
            f"channel {name!r}: scores exceed the float16 range (|score| > {FLOAT16_MAX:.0f})"
        )
    layout.topn_ids(name).parent.mkdir(parents=True, exist_ok=True)
    np.save(layout.topn_ids(name), np.ascontiguousarray(channel.topn_ids, dtype=np.int32))
    np.save(layout.topn_scores(name), np.asarray(channel.topn_scores, dtype=np.float16))
    listed = (channel.topn_ids >= 0).sum(axis=1)
    return {
        "topn": int(channel.topn_ids.shape[1]),
        # a shared list is stored as one row; a map has a row per item
        "rows": int(channel.topn_ids.shape[0]),
        "source": channel.source,
        "items_with_neighbours": int((listed > 0).sum()),
        "mean_neighbours": float(listed.mean()) if len(listed) else 0.0,
    }


def write_fused(
    layout: IndexVersionLayout, mix: Mapping[str, float], topn: int, progress: bool
) -> dict[str, Any] | None:
    """Precompute the default mix's merged map from the maps already written (``fused/``), so the
    service answers that mix by reading one row; None when the mix has a single channel."""
    names = [c for c, w in mix.items() if w > 0]
    if len(names) < 2:
        return None
    maps = [np.load(layout.topn_ids(CHANNEL_MODES[c]), mmap_mode="r") for c in names]
    ids, scores, sources = fused_map(maps, [mix[c] for c in names], topn, progress=progress)
    layout.topn_ids(FUSED).parent.mkdir(parents=True, exist_ok=True)
    np.save(layout.topn_ids(FUSED), ids)
    np.save(layout.topn_scores(FUSED), scores)
    np.save(layout.topn_sources(FUSED), sources)
    return {"mix": dict(mix), "topn": topn, "depth": max(int(m.shape[1]) for m in maps)}


def write_version(
    tmp: Path,
    name: str,
    inputs: BuildInputs,
    config: IndexConfig,
    device: str,
    progress: bool,
    t0: float,
    channels: Mapping[str, ChannelInput] | None = None,
    default_mix: Mapping[str, float] | None = None,
    dataset_dir: Path | None = None,
) -> IndexManifest:
    """Write a whole version into the (temporary) folder ``tmp``: arrays (with ``cold.npy`` when
    ``inputs`` holds cold items), every mode, the labels of views with string ids and the explorer's data
    (``index.labels``, ``index.explorer``: both from ``dataset_dir``), the manifest with checksums, then
    the completion marker last. Returns the manifest."""
    layout = IndexVersionLayout(tmp)
    np.save(layout.items, inputs.items)
    if inputs.cold is not None:
        np.save(layout.cold, np.asarray(inputs.cold, dtype=np.bool_))
    layout.attributes("x").parent.mkdir(parents=True, exist_ok=True)
    for view, arr in inputs.attributes.items():
        np.save(layout.attributes(view), arr)
    views = inputs.attributes
    own = (DIVERSITY_EXCLUDES, views[DIVERSITY_EXCLUDES]) if DIVERSITY_EXCLUDES in views else None
    modes = {
        mode: build_mode(
            layout, mode, data, config, device, progress, own if mode == Mode.DIVERSITY else None
        )
        for mode, data in inputs.modes.items()
    }
    channel_entries = {c: write_channel(layout, c, data) for c, data in (channels or {}).items()}
    fused = write_fused(layout, default_mix, config.topn, progress) if default_mix is not None else None
    explorer = write_explorer(
        layout, inputs.items, inputs.modes["general"].vectors, item_view=inputs.item_view, dataset_dir=dataset_dir,
        cold=inputs.cold,
    )  # fmt: skip
    dataset = DatasetLayout(Path(dataset_dir)) if dataset_dir is not None else None
    labels = write_labels(layout, dataset, [inputs.item_view, *inputs.attributes])
    model = inputs.sources["model"]
    manifest = IndexManifest(
        format=INDEX_FORMAT,
        version=name,
        built_at=datetime.now(UTC).isoformat(),
        build_seconds=time.perf_counter() - t0,
        num_items=inputs.num_items,
        item_view=inputs.item_view,
        attribute_views=sorted(inputs.attributes),
        modes=modes,
        channels=channel_entries,
        default_mix=dict(default_mix) if default_mix is not None else None,
        fused=fused,
        explorer=explorer,
        labels=labels,
        cold=inputs.cold_details if inputs.cold is not None else None,
        sources=inputs.sources,
        model_version=model.get("version") or (model.get("manifest_sha256") or "unknown")[:12],
        config=config.to_dict(),
        faiss_version=faiss.__version__,
        files=describe_files(tmp),
    )
    manifest.write(layout.manifest)
    layout.complete_marker.write_text(f"{name}\n", encoding="utf-8")
    return manifest


def build_index(
    model_dir: Path,
    index_root: Path,
    config: IndexConfig,
    *,
    metric_dir: Path | None = None,
    version: str | None = None,
    publish: bool = True,
    progress: bool = True,
    channels: Mapping[str, ChannelInput] | ChannelBuilder | None = None,
    default_mix: Mapping[str, float] | None = None,
    pinned: Collection[str] = (),
    dataset_dir: Path | None = None,
    cold: ColdInput | ColdBuilder | None = None,
) -> str:
    """Build an index version from ``model_dir`` (+ ``metric_dir`` for the diversity mode) under
    ``<index_root>/versions/<version>/`` (``core.layout.IndexVersionLayout``), validate it, and when
    ``publish`` move ``CURRENT`` to it and prune to ``config.retention`` versions (never CURRENT, the
    ``pinned`` versions nor those of the index root's ``PINNED`` file: ``index.publish.prune``).

    ``channels`` adds map-only retrieval channels (e.g. ``cooc``, ``index.channels``), given as maps or
    as a function of the model's item ids called once the inputs are validated (so a broken model is
    reported before any channel is computed); ``default_mix`` is the mix served when a variant names
    none (default: the general mode alone). ``dataset_dir`` is the dataset whose titles the explorer page
    shows and whose string-id labels the version serves (default: the one the model manifest names;
    none: integer ids only). ``cold`` appends catalogue items without a trained row (``index.inputs.
    ColdInput``, or a function of the validated inputs returning one, e.g. ``offline.jobs.cold_items``): they
    are indexed and mapped like the others, marked in ``cold.npy``, and every channel built from the item
    ids sees them (the ``cooc`` map has no row for them, so their neighbours come from the vectors).
    ``version`` defaults to a UTC timestamp. Returns the version name. Raises ``InvalidArtifact`` (broken
    or unfinished inputs, e.g. a folder without its manifest), ``RecallTooLow`` (approximate index too
    lossy), ``ValueError`` (index type unusable for this catalogue, bad version name), ``FileExistsError``
    (version taken); in every case nothing is published and no version folder is left behind.
    """
    t0 = time.perf_counter()
    root = IndexRoot(Path(index_root))
    require_complete(Path(model_dir), Path(metric_dir) if metric_dir is not None else None)
    inputs = read_inputs(Path(model_dir), Path(metric_dir) if metric_dir is not None else None)
    if callable(cold):
        cold = cold(inputs)
    if cold is not None:
        inputs = with_cold(inputs, cold)
    if callable(channels):
        channels = channels(inputs.items)
    for channel, data in (channels or {}).items():
        if channel == "m2grl" or channel not in CHANNEL_MODES:
            raise ValueError(
                f"channels: {channel!r} is not a map-only channel; channels: {list(CHANNEL_MODES)}"
            )
        data.check(channel, inputs.num_items)
        if data.topn_ids.shape[1] > config.topn:
            # the fused map reads the general map at the channels' depth: it must be as deep
            raise ValueError(
                f"channels: {channel!r} lists {data.topn_ids.shape[1]} neighbours, more than topn {config.topn}"
            )
    if default_mix is not None:
        default_mix = check_mix(default_mix, "default_mix")
        missing = [c for c in default_mix if c != "m2grl" and c not in (channels or {})]
        if missing:
            raise ValueError(f"default_mix: channels {missing} are not built (give their maps)")
    name = check_version_name(version) if version is not None else new_version_name(root.root)
    final = root.version(name).root
    if final.exists():
        raise FileExistsError(f"version: {name!r} already exists under {root.versions}")
    device = resolve_device(config.device)
    with faiss_threads(config.threads), atomic_dir(final) as tmp:
        write_version(
            tmp, name, inputs, config, device, progress, t0, channels, default_mix,
            catalogue_dataset(Path(model_dir), dataset_dir),
        )  # fmt: skip
    try:
        ServingIndex.load(final, mmap=True, full_checksums=True).close()
    except InvalidIndexVersion:
        shutil.rmtree(final, ignore_errors=True)
        raise
    log.info("index version %s built in %.1fs", name, time.perf_counter() - t0)
    if publish:
        publish_version(root.root, name)
        prune(root.root, config.retention, pinned)
    return name
