"""``dagrun report``: the page, opened from ``file://`` in a real headless Chromium.

The sweep carries hostile data: a config value ``<img src=x onerror=alert(1)>``, a metric
named ``<b>loss</b>`` and an exception message holding ``</script><script>alert(2)</script>``;
they must show as text and run nothing. Debian's ``chromium`` is driven by Playwright
(``make test`` installs it; Playwright's own browser download is never used). Without
Chromium or Playwright the browser test skips, and under ``DAGRUN_REQUIRE_SERVICES=1`` (CI)
it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagrun.cli import main
from dagrun.results.html import embed_json, render
from tests.helpers import run_dagrun, write_workflow
from tests.services import require_service

CHROMIUM = os.environ.get("DAGRUN_CHROMIUM", "/usr/bin/chromium")
XSS_VALUE = "<img src=x onerror=alert(1)>"
XSS_MESSAGE = "</script><script>alert(2)</script>"
LOSS = "<b>loss</b>"

WORKFLOW = """
import time

def pre(cfg):
    return cfg["run_id"]


def fit(cfg, rep):
    if cfg["model"] == "broken":
        raise RuntimeError("bad value {message}")
    if cfg["model"] == "slow":
        time.sleep(60)
    return rep


def post(cfg, rep):
    return {{"acc": 1 - cfg["lr"] + 0.01 * rep, {loss!r}: cfg["lr"] * (1 + rep)}}


basecfg = {{"out_path": {out!r}, "pre": pre, "fit": fit, "post": post, "repetitions": 2,
           "timeout": 2, "verbose": False}}
cfgs = {cfgs!r}
"""

CFGS = [
    {"model": XSS_VALUE, "lr": 0.0001},
    {"model": "small", "lr": 0.001},
    {"model": "small", "lr": 0.01},
    {"model": "big", "lr": 0.1},
    {"model": "big", "lr": 0.3},
    {"model": "broken", "lr": 0.01},
    {"model": "slow", "lr": 0.01},
]
WITH_METRICS = 5  # experiments 0-4 have metrics: one point each in every plot
ACC_ASCENDING = [4, 3, 2, 1, 0, 5, 6]  # experiments without a value last


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The executed sweep; its execute wrote OUT/report.html (some runs failed: exit 1)."""
    folder = tmp_path_factory.mktemp("report")
    out = folder / "OUT dir"
    wf = write_workflow(folder, WORKFLOW.format(out=str(out), cfgs=CFGS, loss=LOSS,
                                                message=XSS_MESSAGE))
    result = run_dagrun("execute", wf, "--backend", "multiprocessing", "-j", "2",
                        cwd=folder, timeout=180)
    assert result.rc == 1, result.stderr
    return out


def test_execute_writes_the_report(sweep: Path) -> None:
    assert "dagrun report" in (sweep / "report.html").read_text(encoding="utf-8")


def test_a_no_op_execute_leaves_the_report_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    wf = write_workflow(tmp_path, WORKFLOW.format(out=str(out), cfgs=CFGS[1:2], loss="loss",
                                                  message=""))
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    before = (out / "report.html").stat().st_mtime_ns
    assert run_dagrun("execute", wf, cwd=tmp_path).rc == 0
    assert (out / "report.html").stat().st_mtime_ns == before


def test_report_command_writes_where_asked(sweep: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "elsewhere.html"
    assert main(["report", str(sweep), "-o", str(dest)]) == 0
    assert capsys.readouterr().out.strip() == str(dest)
    html = dest.read_text(encoding="utf-8")
    assert html.count("</script>") == 3  # data, Plotly, the page's script: nothing closed early
    assert XSS_VALUE not in html and XSS_MESSAGE not in html


def test_embedded_json_has_no_markup_characters() -> None:
    data = {"out": "</script><!--", "v": [XSS_VALUE, "a & b"]}
    text = embed_json(data)
    assert not set("<>&") & set(text)
    page = render({**data, "rows": []})
    assert "<title>dagrun report: &lt;/script&gt;&lt;!--</title>" in page


# --------------------------------------------------------------------------------------------
# In the browser.

@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A page of a headless system Chromium with a fresh profile and no network needs."""
    if not os.access(CHROMIUM, os.X_OK):
        require_service(f"no Chromium at {CHROMIUM} (make system-deps installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("playwright is not installed (pip install -e '.[test]')")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-gpu"],
            viewport={"width": 1400, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _row_ids(page: Any) -> list[int]:
    ids = page.eval_on_selector_all("#results-table tbody tr", "rs => rs.map(r => r.dataset.id)")
    return [int(i) for i in ids]


def test_the_page_in_chromium(sweep: Path, browser_page: Any) -> None:
    page = browser_page
    errors: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))

    def on_dialog(dialog: Any) -> None:  # an alert() would mean a payload ran
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    url = (sweep / "report.html").as_uri()
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    page.wait_for_selector("body[data-plots=drawn]", timeout=60_000)
    # varied keys (model, lr) x metrics (acc, <b>loss</b>, fit_time)
    assert page.locator(".plot[data-metric][data-rendered]").count() == 2 * 3

    # one row per experiment; clicking a header sorts (again: descending)
    assert sorted(_row_ids(page)) == list(range(len(CFGS)))
    acc = page.locator("#results-table th[data-col='3']")
    assert acc.locator("span.label").inner_text() == "acc"
    acc.locator("span.label").click()
    assert _row_ids(page) == ACC_ASCENDING
    acc.locator("span.label").click()
    assert _row_ids(page) == [0, 1, 2, 3, 4, 5, 6]
    # the best acc is the largest; flipping the direction moves the highlight
    best_acc = "#results-table tbody td:nth-child(4).best"
    where = "ts => ts.map(t => t.parentNode.dataset.id)"
    assert page.eval_on_selector_all(best_acc, where) == ["0"]
    acc.locator("button.direction").click()
    assert page.eval_on_selector_all(best_acc, where) == ["4"]
    page.fill("#filter", "small")
    assert sorted(_row_ids(page)) == [1, 2]
    page.fill("#filter", "")

    # every plot has one point per experiment with metrics; lr on a log axis, model grouped
    for div in page.query_selector_all(".plot[data-metric]"):
        assert div.eval_on_selector_all(".scatterlayer .point", "ps => ps.length") == WITH_METRICS
        key = div.get_attribute("data-key")
        axis = div.evaluate("d => d._fullLayout.xaxis.type")
        assert axis == ("category" if key == "0" else "log"), div.get_attribute("data-title")

    # hovering a point shows that experiment's config, as text
    plot = page.locator(".plot[data-metric='0'][data-key='1']")
    plot.scroll_into_view_if_needed()
    box = plot.locator(".scatterlayer .point").first.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#tooltip:not([hidden])", timeout=10_000)
    tip = page.inner_text("#tooltip")
    assert "experiment 0" in tip and f"model = {XSS_VALUE}" in tip and "lr = 0.0001" in tip

    # failures by kind with their first error line and run folder
    exception_rows = page.locator("table.failures[data-kind='exception'] tbody tr")
    assert exception_rows.count() == 2
    assert XSS_MESSAGE in exception_rows.first.inner_text()
    assert str(sweep / "5") in exception_rows.first.inner_text()
    assert page.locator("table.failures[data-kind='timeout'] tbody tr").count() == 2

    # hostile strings are text: nothing ran, no element was made from them
    assert XSS_VALUE in page.inner_text("#results-table")
    assert any(LOSS in t for t in page.eval_on_selector_all(".plot text",
                                                            "ts => ts.map(t => t.textContent)"))
    assert page.evaluate("document.querySelectorAll('img, b').length") == 0
    assert page.evaluate("document.scripts.length") == 3
    assert dialogs == []
    assert errors == []
    assert requests == [url]
