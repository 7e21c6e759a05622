"""``docs/your-data.md`` runs as written: each example's command, on the tiny file the guide describes,
prints exactly the console output the guide shows, and the dataset holds what the guide says."""

from __future__ import annotations

import gzip
import re
import shlex
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.atomic import read_json
from core.id_labels import read_id_labels
from core.layout import DatasetLayout
from tests.cli.guide_fixtures import WRITERS

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "your-data.md"
_EXAMPLE = re.compile(r"<!-- guide-example: (\S+) -->\n```bash\n(.*?)```\n\n```text\n(.*?)```", re.S)
_SAMPLE = re.compile(r"<!-- guide-sample: (\S+) (\S+) -->\n```text\n(.*?)```", re.S)
_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d+ [A-Z]+ ")


def _examples() -> dict[str, tuple[list[str], list[str]]]:
    """name -> (argv after ``m2grl``, expected console lines)."""
    out = {}
    for name, command, expected in _EXAMPLE.findall(GUIDE.read_text()):
        argv = shlex.split(command.replace("\\\n", " "))
        assert argv[0] == "m2grl", command
        out[name] = (argv[1:], expected.splitlines())
    return out


EXAMPLES = _examples()


def _run(name: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    WRITERS[name.removesuffix("-too-short")](folder)
    monkeypatch.chdir(folder)
    argv, _ = EXAMPLES[name]
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "10000"})
    lines = [line for line in result.output.splitlines() if line and not _LOG_LINE.match(line)]
    assert "Traceback" not in result.output
    return result.exit_code, lines


def test_the_guide_has_the_three_examples() -> None:
    assert sorted(EXAMPLES) == ["ecommerce", "ecommerce-too-short", "movielens-100k", "taobao"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_prints_what_the_guide_shows(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, lines = _run(name, tmp_path, monkeypatch)
    expected = EXAMPLES[name][1]
    assert lines == expected
    failing = expected[0].startswith("error: ")
    assert code == (2 if failing else 0)
    out = Path(EXAMPLES[name][0][EXAMPLES[name][0].index("--output") + 1])
    assert out.exists() is not failing  # a refused job writes nothing


@pytest.mark.parametrize(("name", "file", "lines"), _SAMPLE.findall(GUIDE.read_text()))
def test_the_sample_lines_are_the_head_of_the_fixture(
    name: str, file: str, lines: str, tmp_path: Path
) -> None:
    WRITERS[name](tmp_path)
    raw = (tmp_path / file).read_bytes()
    text = gzip.decompress(raw).decode() if file.endswith(".gz") else raw.decode()
    shown = lines.splitlines()
    assert text.splitlines()[: len(shown)] == shown


def test_ecommerce_brands_and_behaviours_land_as_the_guide_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run("ecommerce", tmp_path, monkeypatch)[0] == 0
    layout = DatasetLayout(tmp_path / "data" / "shop")
    brands = read_id_labels(layout.labels("brand"))
    assert brands is not None and brands.labels.to_pylist() == ["apple", "samsung", "xiaomi"]
    assert read_id_labels(layout.labels("item")) is None  # integer product ids are kept as they are
    events = pq.read_table(layout.events)
    assert set(events.column("behavior").to_pylist()) == {"view", "cart", "buy"}
    # brand of product p is BRANDS[p % 4]; "" (p % 4 == 3) is unknown: a null brand
    names = brands.to_labels(events.column("brand_id").fill_null(-1).to_numpy())
    want = [["samsung", "apple", "xiaomi", None][p % 4] for p in events.column("item_id").to_pylist()]
    assert names == want
    cats = set(events.column("category_id").to_pylist())
    assert cats <= {2_053_013_555_631_882_655 + k for k in range(3)}
    m = read_json(layout.manifest)
    assert m["behaviour_values_not_kept"] == {"remove_from_cart": 57}
    assert m["time_range"] == [1_569_888_000, 1_569_888_000 + 299 * 36]


def test_movielens_genres_are_flag_names_joined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run("movielens-100k", tmp_path, monkeypatch)[0] == 0
    layout = DatasetLayout(tmp_path / "data" / "ml-100k")
    genres = read_id_labels(layout.labels("category"))
    assert genres is not None
    # movie m has genre flag 1 + m % 5 and Drama when m is odd (guide_fixtures.write_movielens_100k)
    flag = {1: "Action", 2: "Adventure", 3: "Animation", 4: "Children's", 5: "Comedy"}
    expected = {m: flag[1 + m % 5] + ("|Drama" if m % 2 else "") for m in range(1, 7)}
    items = np.load(layout.vocab("item"))
    attributes = np.load(layout.attributes("category"))
    assert dict(zip(items.tolist(), genres.to_labels(attributes), strict=True)) == {
        int(i): expected[int(i)] for i in items
    }
