"""report.json read back into a Report, and the self-contained HTML report, checked in a real
headless browser (Debian's ``chromium``; the browser test is skipped, saying so, where it is not
installed)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from edgepack.errors import UsageError
from edgepack.report.html import to_html
from edgepack.report.load import load_report
from edgepack.report.model import Report
from edgepack.report.svg import Axis, latency_plot, nice_step, percentile
from edgepack.validate.latency import LatencyStats

# ------------------------------------------------------------------------------ round trip

@pytest.mark.slow
def test_report_json_round_trip(tiny_build: Path) -> None:
    written = json.loads((tiny_build / "report.json").read_text())
    report = load_report(tiny_build)
    assert report.to_dict() == written  # every field, derived keys included
    assert Report.from_dict(written) == report
    lat = report.artifacts[0].latency
    assert isinstance(lat, LatencyStats) and lat.samples_ms and lat.isolated
    assert report.artifacts[0].budget is not None
    assert dataclasses.is_dataclass(report.artifacts[0].budget.checks[0])
    assert dataclasses.is_dataclass(report.artifacts[0].path[0])


@pytest.mark.slow
def test_bad_reports_are_refused(tiny_build: Path, tmp_path: Path) -> None:
    written = json.loads((tiny_build / "report.json").read_text())
    odd = json.loads(json.dumps(written))
    odd["artifacts"][0]["latency"]["surprise"] = 1
    with pytest.raises(UsageError, match=r"report.artifacts\[0\].latency has unknown fields "
                                         r"\['surprise'\]"):
        Report.from_dict(odd)
    lacking = json.loads(json.dumps(written))
    del lacking["artifacts"][0]["sha256"]
    with pytest.raises(UsageError, match=r"report.artifacts\[0\] lacks sha256"):
        Report.from_dict(lacking)
    with pytest.raises(UsageError, match="newer edgepack"):
        Report.from_dict({**written, "schema_version": 999})
    with pytest.raises(UsageError, match="not an edgepack build folder"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(UsageError, match="not a readable report"):
        load_report(tmp_path)


# ------------------------------------------------------------------------------ the HTML

class _Dom(HTMLParser):
    """Counts what the checks need: tags, table rows per table id, text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.attrs: list[tuple[str, str, str | None]] = []
        self._table: str | None = None
        self._in_body = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _dom(html: str) -> _Dom:
    dom = _Dom()
    dom.feed(html)
    return dom


def _check_self_contained(dom: _Dom) -> None:
    assert "script" not in dom.tags and "link" not in dom.tags and "img" not in dom.tags
    for tag, key, value in dom.attrs:
        if key in ("src", "href"):
            raise AssertionError(f"<{tag} {key}={value}>: the report must load nothing")
        if key == "xmlns":
            assert value == "http://www.w3.org/2000/svg"  # a namespace name, never fetched
        else:
            assert "://" not in (value or ""), (tag, key, value)


@pytest.mark.slow
def test_build_writes_a_self_contained_report_html(tiny_build: Path) -> None:
    report = load_report(tiny_build)
    html = (tiny_build / "report.html").read_text()
    assert html == to_html(report)  # written from the same Report that report.json holds
    dom = _dom(html)
    _check_self_contained(dom)
    assert dom.rows == {"artifacts": len(report.artifacts)}
    assert dom.tags["svg"] == 2  # latency distributions, size vs accuracy
    runs = sum(len(a.latency.samples_ms) for a in report.artifacts if a.latency)
    # one dot per timed run, except those past the axis (counted as "+n" instead)
    beyond = sum(int(n) for n in re.findall(r"\+(\d+) &#8594;", html))
    size_points = len(report.artifacts)
    legend = len({a.format for a in report.artifacts})
    assert dom.tags["circle"] == runs - beyond + size_points + legend
    text = " ".join(dom.text)
    for a in report.artifacts:
        assert a.file in text and a.conversion_path in text
    assert "passed" in text and report.target.name in text


@pytest.mark.slow
def test_text_from_the_report_is_escaped(tiny_build: Path) -> None:
    report = load_report(tiny_build)
    report.artifacts[0].file = "<script>alert(1)</script>.tflite"
    report.warnings.append('a "quoted" <b>warning</b> & more')
    html = to_html(report)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.tflite" in html
    assert "&lt;b&gt;warning&lt;/b&gt; &amp; more" in html
    _check_self_contained(_dom(html))


# ------------------------------------------------------------------------------ plots

def test_percentile_matches_numpy() -> None:
    values = list(np.random.default_rng(0).random(37))
    for q in (0, 5, 25, 50, 75, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)


def test_axis_maps_and_ticks() -> None:
    lin = Axis(0, 10, 100, 200, log=False)
    assert lin(0) == 100 and lin(5) == 150 and lin(10) == 200 and lin(20) == 200  # clamped
    assert lin.ticks() == [0, 2, 4, 6, 8, 10]
    log = Axis(0.01, 1, 0, 100, log=True)
    assert log(0.1) == pytest.approx(50)
    assert log.ticks() == pytest.approx([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1])
    assert [nice_step(x) for x in (0.013, 0.3, 7)] == pytest.approx([0.02, 0.5, 10])


def test_latency_plot_switches_to_log_for_far_apart_medians() -> None:
    near = latency_plot([("a", [1.0, 1.1, 1.2]), ("b", [2.0, 2.1, 2.2])])
    far = latency_plot([("a", [0.1, 0.11, 0.12]), ("b", [10.0, 10.5, 11.0])])
    assert "log scale" not in near and "log scale" in far
    assert near.count("<circle") == 6 and latency_plot([]) == ""


# ------------------------------------------------------------------------------ the browser

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    pytest.skip("no chromium on PATH: install Debian's `chromium` package to check the HTML "
                "report in a real browser")


def _browser(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={profile}"]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True,
                          timeout=120, check=True)


@pytest.mark.slow
def test_report_html_in_a_real_browser(tiny_build: Path, tmp_path: Path) -> None:
    page = (tiny_build / "report.html").resolve().as_uri()
    report = load_report(tiny_build)
    dom = _dom(_browser("--dump-dom", page, profile=tmp_path / "profile").stdout)
    # the browser's own parse: the table kept its rows, both plots are live SVG
    assert dom.rows.get("artifacts") == len(report.artifacts)
    assert dom.tags.get("svg") == 2 and dom.tags.get("circle", 0) > len(report.artifacts)
    shot = tmp_path / "shot.png"
    _browser(f"--screenshot={shot}", "--window-size=1280,2000", page,
             profile=tmp_path / "profile")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    # a blank or unstyled page compresses to a few KB; tables, text and plots do not
    assert len(data) > 40_000
