"""The demo chain behind ``m2grl demo`` / ``make demo``: every stage on the bundled sample, then serve."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.layout import IndexRoot, ModelLayout

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_INPUTS = {
    "movielens": REPO_ROOT / "data" / "movielens-small",
    "taobao": REPO_ROOT / "data" / "taobao-sample" / "UserBehavior_head_sample.csv.gz",
}


def _stage(name: str, output: Path, fresh: bool) -> bool:
    """True when the stage must run (its artifact is missing, or ``fresh`` was asked)."""
    if output.exists() and not fresh:
        log.info("%s: reusing %s (pass --fresh to rebuild)", name, output)
        return False
    log.info("%s: writing %s", name, output)
    return True


def curl_example(model_dir: Path, port: int) -> str:
    """A working request against the demo index: the most frequent item of the training data."""
    items = np.load(ModelLayout(model_dir).vocab("item"), mmap_mode="r")
    item = int(items[0])
    base = f"http://127.0.0.1:{port}"
    return (
        f"curl -s '{base}/i2i/{item}?mode=general&k=10'\n"
        f"curl -s -H 'X-User-Id: 42' '{base}/i2i/{item}?mode=diversity&k=10'\n"
        f"curl -s '{base}/metrics' | grep m2grl_request_latency\n"
        f"# in a browser: {base}/explore#item={item}"
    )


def run_demo(*, source: str, workdir: Path, epochs: int, port: int, serve: bool, fresh: bool) -> None:
    """prepare -> train -> train-metric -> choose the served mix on validation -> build-index (-> serve) on a
    bundled dataset."""
    from index.build import build_index
    from index.channels import parse_mix
    from index.config import IndexConfig
    from model.config import M2GRLConfig, MetricConfig
    from offline.data.prepare import prepare_from_source
    from offline.evaluation.tune import tune_mix
    from offline.jobs.channels import channels_builder
    from offline.jobs.cold_items import cold_builder
    from offline.jobs.diversity import train_metric_model
    from offline.jobs.train import train_m2grl

    if source not in BUNDLED_INPUTS:
        raise ValueError(f"unknown demo source {source!r}; valid: {sorted(BUNDLED_INPUTS)}")
    workdir = Path(workdir)
    dataset, model, metric = workdir / "dataset", workdir / "model", workdir / "metric"
    mix_dir = workdir / "mix"
    index_root = workdir / "index"

    if _stage("prepare", dataset, fresh):
        prepare_from_source(source, BUNDLED_INPUTS[source], dataset, overwrite=True)  # type: ignore[arg-type]
    if _stage("train", model, fresh):
        train_m2grl(dataset, model, M2GRLConfig(trainer={"epochs": epochs}), overwrite=True)
    if _stage("train-metric", metric, fresh):
        train_metric_model(dataset, model, metric, MetricConfig(), overwrite=True)
    if _stage("choose-mix", mix_dir / "best_mix.txt", fresh):
        tune_mix(dataset, mix_dir, M2GRLConfig(trainer={"epochs": epochs}))
    if fresh or not IndexRoot(index_root).current.exists():
        mix = parse_mix((mix_dir / "best_mix.txt").read_text().strip(), "best_mix.txt")
        build_index(
            model, index_root, IndexConfig(), metric_dir=metric, channels=channels_builder(model, dataset),
            default_mix=mix, cold=cold_builder(model, dataset),
        )  # fmt: skip

    if not serve:
        print(
            f"\nIndex published under {index_root}. Serve it with `m2grl serve --index-root {index_root}`, then:"
        )
        print(curl_example(model, port) + "\n", flush=True)
        return
    print("\nThe service is starting. Try:\n" + curl_example(model, port) + "\n", flush=True)
    from cli.serving import run_server

    run_server(index_root=index_root, host="127.0.0.1", port=port, workers=1)
