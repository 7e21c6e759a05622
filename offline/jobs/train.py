"""The ``m2grl train`` job: dataset folder in, M2GRL model folder out.

Reads a ``core.layout.DatasetLayout`` folder, trains M2GRL with the shared loop
(``model.trainer.train``) and writes a ``core.layout.ModelLayout`` folder atomically. Works the same
under ``torchrun --nproc_per_node=N``: every rank trains on its shard of the sequences, rank 0 writes
checkpoints and the artifact, the others wait for it.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.atomic import atomic_write_json, read_json, sha256_file
from core.layout import DatasetLayout, ModelLayout, relation_name
from core.manifests import DatasetManifest, ModelManifest
from model.artifact import ArtifactError, M2GRLArtifact
from model.batches import BatchSettings, M2GRLInputs, make_batch_fn, steps_per_epoch
from model.config import M2GRLConfig
from model.distributed import DistInfo, barrier, from_env, shutdown
from model.m2grl import M2GRL, intra_task
from model.plots import plot_pca, plot_training_curves
from model.trainer import TrainResult, resolve_device, train
from model.warm_start import warm_start
from model.weighting import make_weighting
from offline.data.prepare import walks_path

Ragged = tuple[np.ndarray, np.ndarray]

log = logging.getLogger(__name__)


def dataset_views(dataset_dir: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Views and relations a dataset manifest declares (``FileNotFoundError``/``ValueError`` if unusable)."""
    manifest = DatasetManifest.read(dataset_dir)
    return list(manifest.views), list(manifest.relations)


def select_views(
    config: M2GRLConfig, views: list[str], relations: list[tuple[str, str]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """The views and relations to train: the config's choice checked against the dataset's."""
    chosen = list(config.views) if config.views is not None else views
    unknown = [v for v in chosen if v not in views]
    if unknown:
        raise ValueError(f"views: {unknown} not in the dataset; valid: {views}")
    if config.relations is not None:
        rels = [tuple(r) for r in config.relations]
        bad = [r for r in rels if r not in relations]
        if bad:
            raise ValueError(f"relations: {bad} not in the dataset; valid: {relations}")
    else:
        rels = [r for r in relations if r[0] in chosen and r[1] in chosen]
    return chosen, [(a, b) for a, b in rels]


def _read_array(path: Path, what: str, key: str | None = None) -> np.ndarray:
    """``np.load`` of a dataset file (``key`` of an ``.npz``); a missing file is ``FileNotFoundError``, a
    truncated or garbled one ``ValueError``, both naming the file."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found ({what})")
    try:
        if key is None:
            return np.asarray(np.load(path, allow_pickle=False))
        with np.load(path, allow_pickle=False) as npz:
            return np.asarray(npz[key])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path}: unreadable ({what}; truncated or not written by prepare?): {exc}"
        ) from None


def concat_ragged(a: Ragged, b: Ragged) -> Ragged:
    """Sequences of ``a`` then those of ``b``, as one ``(indptr, tokens)`` ragged array."""
    indptr = np.concatenate([a[0], b[0][1:] - b[0][0] + a[0][-1]]).astype(np.int64)
    return indptr, np.concatenate([a[1], b[1]]).astype(np.int32)


def _read_ragged(path: Path, what: str) -> Ragged:
    return (
        _read_array(path, what, "indptr").astype(np.int64),
        _read_array(path, what, "tokens").astype(np.int32),
    )


def training_files(dataset_dir: Path, view: str, walks: bool) -> list[Path]:
    """The sequence files of ``view`` training reads: its sessions, then its augmentation walks when
    ``walks`` and ``m2grl prepare`` wrote them (``--walks-per-node`` > 0)."""
    files = [DatasetLayout(Path(dataset_dir)).sequences(view)]
    if walks and walks_path(Path(dataset_dir), view).exists():
        files.append(walks_path(Path(dataset_dir), view))
    return files


def load_inputs(
    dataset_dir: Path, views: list[str], relations: list[tuple[str, str]], *, walks: bool = True
) -> M2GRLInputs:
    """Sequences (plus the augmentation walks, see :func:`training_files`), counts and link tables of the
    chosen views, validated."""
    layout = DatasetLayout(Path(dataset_dir))
    sequences, counts, links = {}, {}, {}
    for view in views:
        parts = [
            _read_ragged(p, f"sequences of view {view!r}") for p in training_files(dataset_dir, view, walks)
        ]
        sequences[view] = parts[0] if len(parts) == 1 else concat_ragged(parts[0], parts[1])
        counts[view] = _read_array(layout.vocab_counts(view), f"counts of view {view!r}").astype(np.int64)
    for a, b in relations:
        links[relation_name(a, b)] = _read_array(layout.link(a, b), f"links {a}-{b}").astype(np.int64)
    return M2GRLInputs(sequences, counts, links, relations)


def dataset_checksum(
    dataset_dir: Path, views: list[str], relations: list[tuple[str, str]], *, walks: bool = True
) -> str:
    """sha256 over the files training reads (manifest, vocabularies, sequences and walks, links)."""
    layout = DatasetLayout(Path(dataset_dir))
    paths = [layout.manifest]
    for v in views:
        paths += [layout.vocab(v), layout.vocab_counts(v), *training_files(dataset_dir, v, walks)]
    paths += [layout.link(a, b) for a, b in relations]
    digest = hashlib.sha256()
    for p in paths:
        digest.update(f"{p.relative_to(layout.root)}:{sha256_file(p)}\n".encode())
    return digest.hexdigest()


def build_model(config: M2GRLConfig, inputs: M2GRLInputs) -> M2GRL:
    """The factory: reads the config, builds the model with explicit arguments."""
    model_tasks = [intra_task(v) for v in inputs.views] + [
        f"inter:{relation_name(a, b)}" for a, b in inputs.relations
    ]
    weighting = make_weighting(
        config.weighting,
        model_tasks,
        instance_task=intra_task(inputs.views[0]),
        static_weights=config.static_weights,
        min_sigma2=config.min_sigma2,
        init_log_sigma2=config.init_log_sigma2,
        max_weight_ratio=config.max_weight_ratio,
    )
    return M2GRL(
        inputs.view_sizes(),
        inputs.relations,
        weighting,
        dim=config.dim,
        relation_dim=config.rel_dim,
        negatives=config.negatives,
        align_item_grad=config.align_item_grad,
        clip_item_apart=config.clip_item_apart,
        seed=config.trainer.seed,
    )


def batch_settings(config: M2GRLConfig) -> BatchSettings:
    return BatchSettings(
        window=config.window,
        dynamic_window=config.dynamic_window,
        negatives=config.negatives,
        shared_negatives=config.shared_negatives,
        neg_power=config.neg_power,
        batch_size=config.batch_size,
    )


def check_resume(checkpoints: Path, fingerprint: dict[str, Any], resume: bool, info: DistInfo) -> None:
    """Refuse to resume checkpoints written for another config or dataset; start a fresh run cleanly."""
    meta = checkpoints / "run.json"
    if resume and meta.exists():
        previous = read_json(meta)
        if previous != fingerprint:
            raise ValueError(
                f"cannot resume: the checkpoints in {checkpoints} were written for another config or dataset "
                "(delete them or train without --resume)"
            )
    if info.is_main:
        if not resume:
            for old in checkpoints.glob("epoch-*.pt"):
                old.unlink()
        atomic_write_json(meta, fingerprint)
    barrier(info)


def train_m2grl(
    dataset_dir: Path,
    output: Path,
    config: M2GRLConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    init_from: Path | None = None,
) -> Path:
    """Train M2GRL on a dataset folder and write the model folder.

    Args:
        dataset_dir: a ``DatasetLayout`` folder (manifest, vocab, sequences, links, attributes).
        output: the ``ModelLayout`` folder to write atomically.
        config: validated hyper-parameters.
        resume: continue from the newest per-epoch checkpoint (kept next to ``output``).
        overwrite: replace an existing ``output``.
        progress: show per-epoch tqdm bars.
        init_from: a previous model folder to warm-start from (``model.warm_start``: known rows copied,
            new items placed from their side views, a fresh optimiser).
    Returns:
        ``output``. Raises ``FileExistsError`` (output exists, no overwrite), ``FileNotFoundError``
        (missing dataset file) or ``ValueError`` (bad views/relations, inconsistent arrays).
        Under torchrun, joins the process group from the environment; rank 0 writes.
    """
    dataset_dir, output = Path(dataset_dir), Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists (pass overwrite=True to replace it)")
    started = time.time()
    all_views, all_relations = dataset_views(dataset_dir)
    views, relations = select_views(config, all_views, all_relations)
    inputs = load_inputs(dataset_dir, views, relations, walks=config.walks)
    checksum = dataset_checksum(dataset_dir, views, relations, walks=config.walks)
    device = resolve_device(config.trainer.device)
    info = from_env(device)
    try:
        model = build_model(config, inputs)
        warm = _warm_start(model, Path(init_from), dataset_dir, inputs) if init_from is not None else None
        settings = batch_settings(config)
        checkpoints = ModelLayout(output).checkpoints
        checkpoints.mkdir(parents=True, exist_ok=True)
        # Resuming may extend the number of epochs; anything else must match the checkpoints.
        resumable = config.to_dict()
        del resumable["trainer"]["epochs"]
        fingerprint = {
            "config": resumable,
            "dataset_sha256": checksum,
            "world": info.world,
            "warm_start": warm,
        }
        check_resume(checkpoints, fingerprint, resume, info)
        result = train(
            model,
            make_batch_fn(inputs, settings, seed=config.trainer.seed, rank=info.rank, world=info.world),
            config.trainer,
            checkpoint_dir=checkpoints,
            resume=resume,
            progress=progress,
            dist_info=info,
            steps_per_epoch=steps_per_epoch(inputs, settings, info.world),
            description="M2GRL epoch",
        )
        if info.is_main:
            artifact = _artifact(model, dataset_dir, inputs, config, result, checksum, info, started, warm)
            artifact.save(
                output, overwrite=overwrite, extra=lambda layout: _plots(layout, artifact, result, config)
            )
            for old in checkpoints.glob("*"):
                old.unlink()
            checkpoints.rmdir()
        barrier(info)
    finally:
        shutdown()
    return output


def _warm_start(model: M2GRL, init_from: Path, dataset_dir: Path, inputs: M2GRLInputs) -> dict[str, Any]:
    """Initialise ``model`` from the model folder ``init_from``; what was copied, for the manifest."""
    try:
        previous = M2GRLArtifact.load(init_from)
    except (FileNotFoundError, ArtifactError) as exc:
        raise ValueError(f"--init-from: {init_from} is not a readable model folder: {exc}") from None
    layout = DatasetLayout(dataset_dir)
    vocab = {v: np.load(layout.vocab(v)).astype(np.int64) for v in inputs.views}
    rows = warm_start(model, previous, vocab, inputs.links)
    return {"from": str(init_from.resolve()), "rows": rows}


def _artifact(
    model: M2GRL,
    dataset_dir: Path,
    inputs: M2GRLInputs,
    config: M2GRLConfig,
    result: TrainResult,
    checksum: str,
    info: DistInfo,
    started: float,
    warm: dict[str, Any] | None,
) -> M2GRLArtifact:
    layout = DatasetLayout(dataset_dir)
    views = inputs.views
    attributes = {}
    attr_dir = layout.root / "attributes"
    if attr_dir.exists():
        attributes = {p.stem: np.load(p).astype(np.int64) for p in sorted(attr_dir.glob("*.npy"))}
    relational = {rel: model.relational(rel) for rel in model.relations}
    manifest = ModelManifest(
        views=list(views),
        relations=list(inputs.relations),
        config=config.to_dict(),
        dataset=str(dataset_dir.resolve()),
        dataset_sha256=checksum,
        paper="M2GRL (KDD 2020), sections 3.3-3.5 and 5.3",
        counts={
            "vocab": inputs.view_sizes(),
            "tokens": {v: int(inputs.sequences[v][0][-1]) for v in views},
            "sequences": {v: len(inputs.sequences[v][0]) - 1 for v in views},
        },
        training={
            "world_size": info.world,
            "epochs": result.epochs_done,
            "resumed_from": result.resumed_from,
            "pairs_per_rank": result.pairs,
            "pairs_per_s": result.pairs_per_s,
            "train_seconds": result.wall_time_s,
            "final_losses": result.final_losses(),
            "epoch_losses": result.epoch_losses,
        },
        seconds=round(time.time() - started, 3),
        versions={
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        **({"warm_start": warm} if warm is not None else {}),
    )
    return M2GRLArtifact(
        views=views,
        relations=list(inputs.relations),
        embeddings={v: model.embeddings(v) for v in views},
        context={v: model.context(v) for v in views},
        relation_matrices={r: model.W[r].detach().cpu().numpy().astype(np.float32) for r in model.relations},
        relational=relational,
        vocab={v: np.load(layout.vocab(v)).astype(np.int64) for v in views},
        attributes=attributes,
        task_weights=model.task_state(),
        manifest=manifest,
    )


def _plots(layout: ModelLayout, artifact: M2GRLArtifact, result: TrainResult, config: M2GRLConfig) -> None:
    plot_training_curves(
        result.steps,
        result.losses,
        result.sigma2 if config.weighting in ("adaptive", "bounded") else {},
        layout.plots / "training_curves.png",
        min_sigma2=config.min_sigma2,
    )
    labels_view = next((v for v in artifact.views[1:] if v in artifact.attributes), None)
    if labels_view is None:
        labels_view = next(iter(artifact.attributes), None)
    if labels_view is not None:
        item = artifact.views[0]
        plot_pca(artifact.embeddings[item], artifact.attributes[labels_view], layout.plots / "pca_items.png")
