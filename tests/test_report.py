"""The run report: one offline HTML page built from a real tiny run, checked as text (escaping, no
external links, the run's figures) and in headless Chromium (it renders, the console stays clean).
Also the --json and --quiet logging of `run`."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest

from loop.cli import main
from loop.report import funnel_steps, render
from loop.svg import Point, series_chart

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# CI sets this once it has installed Chromium: the browser test must then run, never skip.
BROWSER_REQUIRED = os.environ.get("SELFLOOP_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def report(tiny_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "page.html"
    assert main(["report", str(tiny_run["run"]), "--out", str(out)]) == 0
    return out


def test_funnel_counts_what_is_left_after_each_step() -> None:
    funnel = {"generated": 10, "unparseable": 1, "quality": 3, "dedup": 0, "survivors": 6}
    assert funnel_steps(funnel) == [
        ("generated", 10, 0),
        ("unparseable", 9, 1),
        ("quality", 6, 3),
        ("dedup", 6, 0),
    ]


def test_text_from_the_run_is_escaped() -> None:
    row = {
        "combined_score": 0.5,
        "survivor": False,
        "rejected_by": "quality",
        "instruction": "<script>alert(1)</script>",
        "response": 'a "b" & <c>',
        "quality_score": 0.1,
        "quality_pass": False,
        "quality_reason": "<img src=x>",
    }
    m = {
        "round": 1,
        "status": "rejected",
        "reason": "<b>no</b>",
        "candidates": 1,
        "survivors": 0,
        "funnel": {"generated": 1, "quality": 1, "survivors": 0},
        "scores": {"quality": 0.1},
    }
    page = render("<run>", "P&Q", "persona", ["quality"], [m], {1: [row]})
    assert "<script>" not in page and "<img" not in page and "<b>no</b>" not in page
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        and "a &quot;b&quot; &amp; &lt;c&gt;" in page
    )
    assert "P&amp;Q" in page


def test_an_interval_bar_spans_lo_to_hi() -> None:
    # y axis 0..1 over a plot of H - PAD_T - PAD_B = 220 - 26 - 40 = 154 px starting at y = 26:
    # lo 0.25 sits at 26 + 154 * 0.75 = 141.5, hi 0.75 at 26 + 154 * 0.25 = 64.5
    chart = series_chart("t", ["round 1"], {"a": [Point(0.5, 0.25, 0.75)]}, floor=0.0, ceil=1.0)
    assert 'y1="141.5" y2="64.5"' in chart


def test_the_page_is_self_contained_and_shows_the_run(report: Path, tiny_run: dict) -> None:
    page = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", page)
    assert "http://" not in page and "https://" not in page
    metrics = json.loads((tiny_run["run"] / "round_002" / "metrics.json").read_text())
    persona = metrics["eval"]["adapter"]["persona"]
    assert f"{persona['mean']:.3f} [{persona['lo']:.3f}, {persona['hi']:.3f}]" in page
    assert page.count("<svg") >= 8
    for section in ("Funnel", "Critic scores", "CrowS-Pairs by bias type", "diversity", "best"):
        assert section in page


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER or BROWSER_REQUIRED),
    reason="chromium is not installed: apt-get install -y chromium chromium-driver",
)
def test_the_page_renders_in_headless_chromium_without_console_errors(
    report: Path, tiny_run: dict, tmp_path: Path
) -> None:
    assert CHROMIUM and CHROMEDRIVER, "SELFLOOP_REQUIRE_BROWSER=1 but chromium is not on PATH"
    if BROWSER_REQUIRED:
        from selenium import webdriver
    else:
        webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        driver.get(report.as_uri())
        survivors = [
            e.text for e in driver.find_elements(By.CSS_SELECTOR, "table.rounds .survivors")
        ]
        metrics = [
            json.loads((tiny_run["run"] / f"round_00{k}" / "metrics.json").read_text())
            for k in (1, 2)
        ]
        assert survivors == [str(m["survivors"]) for m in metrics]
        persona = metrics[0]["eval"]["adapter"]["persona"]
        assert (
            f"{persona['mean']:.3f} [{persona['lo']:.3f},"
            in driver.find_element(By.CSS_SELECTOR, "table.rounds").text
        )
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 8
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()


def test_json_logs_carry_each_stage_as_fields(tiny_run: dict) -> None:
    records = [json.loads(line) for line in tiny_run["stderr"].splitlines() if line.startswith("{")]
    stages = [r for r in records if "stage" in r]
    assert [(r["round"], r["stage"]) for r in stages] == [
        (k, s) for k in (1, 2) for s in ("prompts", "generate", "critique", "train", "evaluate")
    ]
    assert all({"time", "level", "message", "seconds"} <= set(r) for r in stages)
    assert stages[0]["message"].startswith("round 1 | prompts | ")


def test_quiet_keeps_warnings_and_drops_info(tiny_run: dict, capsys) -> None:
    assert main(["resume", str(tiny_run["run"]), "--quiet"]) == 0
    root = logging.getLogger()
    assert root.level == logging.WARNING
    assert main(["resume", str(tiny_run["run"])]) == 0
    assert root.level == logging.INFO
