"""The A/B readout (``app.readout``) and ``m2grl ab report``: statistics against values worked out by
hand, the Prometheus queries against a fake Prometheus HTTP API, and one-line errors."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from app.readout import (
    ArmCounts,
    ReadoutError,
    counter_query,
    diff_interval,
    fetch_counts,
    format_readout,
    make_readout,
    readout_from_prometheus,
    required_per_arm,
    z_two_sided,
)
from cli.main import app as cli
from tests.net import free_port

# --- statistics ------------------------------------------------------------------------------------


def test_normal_quantiles() -> None:
    assert z_two_sided(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_two_sided(0.90) == pytest.approx(1.644854, abs=1e-6)
    with pytest.raises(ValueError, match="confidence"):
        z_two_sided(1.0)


def test_wald_interval_of_the_difference() -> None:
    # control 50/1000 = 5 %, arm 100/1000 = 10 %:
    # se = sqrt(0.05 * 0.95 / 1000 + 0.10 * 0.90 / 1000) = sqrt(0.0001375) = 0.0117260
    # half width = 1.959964 * 0.0117260 = 0.0229826
    d, low, high = diff_interval(50, 1000, 100, 1000)
    assert d == pytest.approx(0.05)
    assert low == pytest.approx(0.0270174, abs=1e-6)
    assert high == pytest.approx(0.0729826, abs=1e-6)
    # unequal arms: control 30/600 = 5 %, arm 20/200 = 10 %
    # se = sqrt(0.0475 / 600 + 0.09 / 200) = sqrt(0.00052917) = 0.0230036; half = 0.0450862
    d, low, high = diff_interval(30, 600, 20, 200)
    assert (low, high) == (pytest.approx(0.0049138, abs=1e-6), pytest.approx(0.0950862, abs=1e-6))
    # a 90 % interval is narrower: half = 1.644854 * 0.0117260 = 0.0192876
    _, low90, _ = diff_interval(50, 1000, 100, 1000, confidence=0.90)
    assert low90 == pytest.approx(0.05 - 0.0192876, abs=1e-6)


def test_wald_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="no impressions"):
        diff_interval(0, 0, 1, 10)
    with pytest.raises(ValueError, match="11 clicks for 10 impressions"):
        diff_interval(1, 10, 11, 10)


def test_impressions_needed_per_arm() -> None:
    # 5 % vs 10 %, alpha 0.05 two-sided, power 0.8: p = 0.075,
    # (1.959964 * sqrt(2 * 0.075 * 0.925) + 0.841621 * sqrt(0.0475 + 0.09))^2 / 0.05^2
    # = (0.730071 + 0.312081)^2 / 0.0025 = 434.4 -> 435 (the textbook figure)
    assert required_per_arm(0.05, 0.10) == 435
    assert required_per_arm(0.10, 0.05) == 435
    # 50 % vs 60 %: (1.959964 * sqrt(0.495) + 0.841621 * 0.7)^2 / 0.01 = 387.3 -> 388
    assert required_per_arm(0.5, 0.6) == 388
    # more power needs more: z_0.9 = 1.281552 -> (0.730071 + 0.475213)^2 / 0.0025 = 581.1 -> 582
    assert required_per_arm(0.05, 0.10, power=0.9) == 582
    assert required_per_arm(0.05, 0.05) is None


def _arms(*rows: tuple[str, int, int]) -> list[ArmCounts]:
    return [ArmCounts(*row) for row in rows]


def test_readout_calls_a_decisive_winner() -> None:
    readout = make_readout(_arms(("treatment", 1000, 100), ("control", 1000, 50)), "control")
    control, treatment = readout.arms
    assert (control.variant, control.verdict, control.ctr) == ("control", "control", 0.05)
    assert treatment.ctr == 0.1 and treatment.diff == pytest.approx(0.05)
    assert treatment.low == pytest.approx(0.0270174, abs=1e-6)
    assert (treatment.required, treatment.enough, treatment.verdict) == (435, True, "better")
    assert readout.winner == "treatment"


def test_significant_but_short_of_the_needed_sample_is_only_leaning() -> None:
    # 20/400 vs 40/400: interval [1.37, 8.63] pp excludes 0, but 435 impressions per arm are needed
    readout = make_readout(_arms(("control", 400, 20), ("treatment", 400, 40)), "control")
    treatment = readout.arms[1]
    assert treatment.low is not None and treatment.low > 0
    assert (treatment.required, treatment.enough, treatment.verdict) == (435, False, "leaning better")
    assert readout.winner is None


def test_control_wins_when_every_arm_is_decisively_worse() -> None:
    readout = make_readout(_arms(("control", 1000, 100), ("b", 1000, 50), ("c", 2000, 100)), "control")
    assert [a.verdict for a in readout.arms] == ["control", "worse", "worse"]
    assert readout.winner == "control"
    mixed = make_readout(_arms(("control", 1000, 100), ("b", 1000, 50), ("c", 1000, 98)), "control")
    assert [a.verdict for a in mixed.arms] == ["control", "worse", "inconclusive"]
    assert mixed.winner is None


def test_the_best_of_several_better_arms_wins() -> None:
    readout = make_readout(_arms(("control", 2000, 100), ("b", 2000, 200), ("c", 2000, 300)), "control")
    assert [a.verdict for a in readout.arms] == ["control", "better", "better"]
    assert readout.winner == "c"


def test_equal_ctrs_and_empty_arms_are_never_called() -> None:
    readout = make_readout(_arms(("control", 1000, 50), ("same", 500, 25), ("new", 0, 0)), "control")
    by_name = {a.variant: a for a in readout.arms}
    assert (by_name["same"].diff, by_name["same"].required, by_name["same"].verdict) == (
        0.0,
        None,
        "inconclusive",
    )
    assert (by_name["new"].ctr, by_name["new"].verdict) == (None, "no data")
    assert readout.winner is None


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (
            _arms(("a", 10, 1), ("b", 10, 2)),
            "control variant 'control' has no feedback data; variants with data: ['a', 'b']",
        ),
        (_arms(("control", 0, 0), ("b", 10, 2)), "control variant 'control' has no impressions yet"),
        (_arms(("control", 10, 1), ("b", 10, 12)), "variant 'b': 12 clicks exceed 10 impressions"),
    ],
)
def test_readout_errors(counts: list[ArmCounts], message: str) -> None:
    with pytest.raises(ReadoutError) as info:
        make_readout(counts, "control")
    assert str(info.value) == message


def test_table_shows_every_figure() -> None:
    text = format_readout(make_readout(_arms(("control", 1000, 50), ("treatment", 1000, 100)), "control"))
    header, control, treatment, call = text.splitlines()
    assert header.split() == ["variant", "impressions", "clicks", "CTR", "%", "diff", "pp", "95%", "CI", "pp",
                              "needed/arm", "enough", "verdict"]  # fmt: skip
    assert control.split() == ["control", "1000", "50", "5.00", "-", "-", "-", "-", "control"]
    assert treatment.split() == ["treatment", "1000", "100", "10.00", "+5.00", "[+2.70,", "+7.30]", "435", "yes",
                                 "better"]  # fmt: skip
    assert call == "call: treatment has the best CTR"
    undecided = format_readout(make_readout(_arms(("control", 100, 5), ("t", 100, 5)), "control"))
    assert "inf" in undecided and undecided.endswith(
        "call: none yet (no variant differs from control decisively)"
    )


# --- Prometheus queries -----------------------------------------------------------------------------


def test_counter_queries() -> None:
    assert counter_query("m2grl_feedback_clicks_total", "30d") == (
        "sum by (variant) (increase(m2grl_feedback_clicks_total[30d]))"
    )
    assert counter_query("m2grl_feedback_clicks_total", "1h30m", "general") == (
        'sum by (variant) (increase(m2grl_feedback_clicks_total{mode="general"}[1h30m]))'
    )
    assert (
        counter_query("m2grl_feedback_clicks_total", "total")
        == "sum by (variant) (m2grl_feedback_clicks_total)"
    )
    for window in ("30", "d", "30 d", "1h)", ""):
        with pytest.raises(ReadoutError, match="not a Prometheus duration"):
            counter_query("m2grl_feedback_clicks_total", window)
    with pytest.raises(ReadoutError, match="not a mode name"):
        counter_query("m2grl_feedback_clicks_total", "1d", 'general"}')


class FakePrometheus:
    """``/api/v1/query`` answering from ``answers`` (metric name in the query -> vector, or a whole
    response as ``(status, body)``); remembers the queries."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = parse_qs(urlparse(self.path).query)["query"][0]
                fake.queries.append(query)
                name = "impressions" if "impressions" in query else "clicks"
                answer = fake.answers.get(name, [])
                if isinstance(answer, tuple):
                    status, body = answer
                else:
                    status = 200
                    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {"variant": v}, "value": [1.7e9, str(x)]} for v, x in answer
                    ]}}).encode()  # fmt: skip
                self.send_response(status)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_counts_are_read_per_variant_and_rounded(prom: FakePrometheus) -> None:
    # increase() extrapolates: 999.6 impressions are 1000; a variant without clicks has 0; NaN is no data
    prom.answers = {
        "impressions": [("control", 999.6), ("treatment", 1000.2), ("gone", math.nan)],
        "clicks": [("control", 50.4)],
    }
    counts = fetch_counts(prom.url, "7d", "diversity")
    assert counts == [ArmCounts("control", 1000, 50), ArmCounts("treatment", 1000, 0)]
    assert prom.queries == [
        'sum by (variant) (increase(m2grl_feedback_impressions_total{mode="diversity"}[7d]))',
        'sum by (variant) (increase(m2grl_feedback_clicks_total{mode="diversity"}[7d]))',
    ]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({}, "no feedback counted in Prometheus at URL over 30d"),
        ({"impressions": [("control", 0.0)], "clicks": [("control", 0.0)]}, "no feedback counted"),
        (
            {"impressions": (400, b'{"status": "error", "error": "parse error at char 3"}')},
            "Prometheus refused 'sum by (variant) (increase(m2grl_feedback_impressions_total[30d]))': parse error at char 3",
        ),
        (
            {"impressions": (502, b"<html>bad gateway</html>")},
            "Prometheus at URL answered HTTP 502, not JSON",
        ),
    ],
    ids=["no-series", "all-zero", "query-error", "not-json"],
)
def test_fetch_errors_are_one_line(prom: FakePrometheus, answers: dict[str, Any], message: str) -> None:
    prom.answers = answers
    with pytest.raises(ReadoutError) as info:
        fetch_counts(prom.url, "30d")
    assert str(info.value).startswith(message.replace("URL", prom.url))
    assert "\n" not in str(info.value)


def test_unreachable_prometheus() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ReadoutError, match=f"Prometheus at {url} is unreachable"):
        readout_from_prometheus(url)


# --- m2grl ab report --------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_prints_the_table(prom: FakePrometheus) -> None:
    prom.answers = {"impressions": [("control", 1000), ("treatment", 1000)],
                    "clicks": [("control", 50), ("treatment", 100)]}  # fmt: skip
    result = runner.invoke(cli, ["ab", "report", "--prometheus", prom.url, "--window", "total"])
    assert result.exit_code == 0, result.output
    assert "435" in result.output and "[+2.70, +7.30]" in result.output
    assert result.output.rstrip().endswith("call: treatment has the best CTR")
    assert prom.queries[0] == "sum by (variant) (m2grl_feedback_impressions_total)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--control", "nope"],
            "error: control variant 'nope' has no feedback data; variants with data: ['control', 'treatment']",
        ),
        (["--window", "forever"], "error: --window: 'forever' is not a Prometheus duration"),
        (["--confidence", "95"], "error: --confidence and --power must be between 0 and 1"),
    ],
)
def test_cli_errors_are_one_line(prom: FakePrometheus, args: list[str], message: str) -> None:
    prom.answers = {"impressions": [("control", 10), ("treatment", 10)], "clicks": []}
    result = runner.invoke(cli, ["ab", "report", "--prometheus", prom.url, *args])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_cli_unreachable_and_empty_prometheus(prom: FakePrometheus) -> None:
    down = runner.invoke(cli, ["ab", "report", "--prometheus", f"http://127.0.0.1:{free_port()}"])
    assert down.exit_code == 2 and "is unreachable" in down.output and down.output.count("\n") == 1
    empty = runner.invoke(cli, ["ab", "report", "--prometheus", prom.url])
    assert empty.exit_code == 2 and empty.output.startswith("error: no feedback counted")


def test_report_documents_every_option() -> None:
    import typer.main
    from typer.core import TyperOption

    report = typer.main.get_command(cli).commands["ab"].commands["report"]  # type: ignore[attr-defined]
    options = [p for p in report.params if isinstance(p, TyperOption)]
    assert {o.opts[0] for o in options} >= {"--prometheus", "--control", "--window", "--mode"}
    assert all(o.help for o in options)
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0 and " ab " in top.output
