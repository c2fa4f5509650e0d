"""``dagrun report``: the page, opened from ``file://`` in a real headless Chromium.

The executed sweep carries hostile data: a config value ``<img src=x onerror=alert(1)>``, a
metric named ``<b>loss</b>`` and an exception message holding
``</script><script>alert(2)</script>``; they must show as text and run nothing. Sweeps written
straight to disk (plan and results.jsonl, as ``bench/report_scale.py`` does) check what the
page makes of ordinary grids (``None`` among numbers, a 0 on a log grid, a strings among
numbers), of markup in config values, of many keys and of a running sweep. Every page must
leave the console empty.

Debian's ``chromium`` is driven by Playwright (``make test`` installs it; Playwright's own
browser download is never used); one browser serves the whole module. Without Chromium or
Playwright the browser tests skip, and under ``DAGRUN_REQUIRE_SERVICES=1`` (CI) they fail.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dagrun.cli import main
from dagrun.disk.atomic import strict_json
from dagrun.disk.layout import SweepDir
from dagrun.disk.lock import driver_lock
from dagrun.disk.planstore import write_plan
from dagrun.disk.runs import Experiment
from dagrun.results.html import embed_json, render, write_report
from dagrun.results.html.data import report_data
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
ACC_RANKED = [0, 1, 2, 3, 4, 5, 6]  # acc: larger is better; experiments without a value last
TIMEOUT = 2


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
# Sweeps written straight to disk.

def write_sweep(out: Path, cfgs: list[dict[str, Any]],
                scores: Callable[[int, dict[str, Any], int], dict[str, float | None]],
                reps: int = 3, not_done: frozenset[int] = frozenset(),
                settings: dict[str, Any] | None = None) -> Path:
    """A sweep of ``cfgs`` x ``reps`` as dagrun leaves it on disk: the plan and a results
    line per experiment (strict JSON, each metric a list with ``mean_M``, ``std_M`` and
    ``n_M``); the experiments in ``not_done`` have no line and no run yet."""
    sweep = SweepDir.at(str(out))
    os.makedirs(sweep.state, exist_ok=True)
    write_plan(sweep, [Experiment(i, reps, cfg, f"{i:032x}") for i, cfg in enumerate(cfgs)],
               {"backend": "multiprocessing", **(settings or {})})
    lines = []
    for i, cfg in enumerate(cfgs):
        if i in not_done:
            continue
        per_rep = [scores(i, cfg, rep) for rep in range(reps)]
        agg: dict[str, Any] = {}
        for name in per_rep[0]:
            values = [s[name] for s in per_rep]
            finite = [v for v in values if v is not None and math.isfinite(v)]
            mean = sum(finite) / len(finite)
            std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
            agg.update({name: values, f"mean_{name}": mean, f"std_{name}": std,
                        f"n_{name}": len(finite)})
        lines.append(json.dumps(strict_json({**cfg, "experiment_id": i, "scores": agg,
                                             "out_path": sweep.experiment_path(i)})) + "\n")
    with open(sweep.results, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return out


def test_the_ranking_metric_is_report_metric(tmp_path: Path) -> None:
    def scores(i: int, cfg: dict[str, Any], rep: int) -> dict[str, float | None]:
        return {"acc": 0.1 * i, "auc": 1.0 - 0.1 * i, "fit_time": 0.5}

    cfgs = [{"lr": 10.0 ** -i} for i in range(4)]
    data = report_data(write_sweep(tmp_path / "a", cfgs, scores))
    assert [m["name"] for m in data["metrics"]] == ["acc", "auc", "fit_time"]
    assert (data["primary"], data["primary_note"]) == (0, None)
    data = report_data(write_sweep(tmp_path / "b", cfgs, scores,
                                   settings={"report_metric": "auc"}))
    assert data["primary"] == 1
    data = report_data(write_sweep(tmp_path / "c", cfgs, scores,
                                   settings={"report_metric": "f1"}))
    assert data["primary"] == 0 and "'f1' is not a numeric metric" in data["primary_note"]


def test_rows_read_either_results_format(tmp_path: Path) -> None:
    """Lines of one repetition as older dagrun wrote them (the values themselves, no n_M)
    and as lists with mean_M, std_M, n_M give the same rows; a NaN config value keeps its
    name."""
    out = tmp_path / "out"
    cfgs: list[dict[str, Any]] = [{"lr": 0.1, "depth": None}, {"lr": 0.2, "depth": math.nan},
                                  {"lr": 0.3, "depth": 2.5}]
    write_sweep(out, cfgs, lambda i, c, rep: {"acc": 0.5 + i, "fit_time": 1.0}, reps=1)
    new = report_data(out)["rows"]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for line in lines:
        line["scores"] = {"acc": line["scores"]["acc"][0],
                          "fit_time": line["scores"]["fit_time"][0]}
    (out / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (out / ".dagrun" / "results-columns.marshal").unlink(missing_ok=True)
    old = report_data(out)["rows"]
    assert old == new
    assert [r[5] for r in new] == [[[0.5 + i, 0.0, 1, None], [1.0, 0.0, 1, None]]
                                   for i in range(3)]
    assert [r[4] for r in new] == [[0.1, None], [0.2, {"nonfinite": "NaN"}], [0.3, 2.5]]


def test_the_driver_writes_its_report_without_touching_its_lock(tmp_path: Path) -> None:
    """The report at the end of an execute is written while the driver holds the sweep's
    lock: asking who holds it would close the lock file and drop the driver's own lock."""
    out = _grid_sweep(tmp_path / "out")
    ask = [sys.executable, "-c", "import sys\nfrom dagrun.disk.layout import SweepDir\n"
           "from dagrun.disk.lock import running_driver\n"
           "print(running_driver(SweepDir.at(sys.argv[1])))", str(out)]
    with driver_lock(SweepDir.at(str(out))):
        write_report(out, in_driver=True)
        held = subprocess.run(ask, capture_output=True, text=True, check=True).stdout
    assert held.startswith(f"pid {os.getpid()} "), held
    assert 'id="running"' in (out / "report.html").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# In the browser.

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless system Chromium with a fresh profile, one for the module. WebGL (the
    parallel coordinates) runs on SwiftShader through ANGLE, which, unlike the GPU-less
    default, logs no driver messages ("GPU stall due to ReadPixels") to the page's
    console."""
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
                  "--disable-component-update", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader"],
            viewport={"width": 1280, "height": 1000})
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Page:
    """A page of the browser with everything it said: console messages (any type), page
    errors, dialogs (an ``alert`` would mean a payload ran) and requests."""

    page: Any
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def open(self, report: Path) -> str:
        url = report.as_uri()
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        self.page.wait_for_selector("body[data-plots=drawn]", timeout=30_000)
        return url

    def texts(self, selector: str) -> list[str]:
        return list(self.page.eval_on_selector_all(selector, "ns => ns.map(n => n.textContent)"))


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser.new_page())

    def on_dialog(dialog: Any) -> None:
        p.dialogs.append(dialog.message)
        dialog.dismiss()

    p.page.on("console", lambda m: p.console.append(f"{m.type}: {m.text}"))
    p.page.on("pageerror", lambda e: p.console.append(f"pageerror: {e}"))
    p.page.on("dialog", on_dialog)
    p.page.on("request", lambda r: p.requests.append(r.url))
    try:
        yield p
    finally:
        p.page.close()


def _row_ids(page: Any) -> list[int]:
    ids = page.eval_on_selector_all("#results-table tbody tr", "rs => rs.map(r => r.dataset.id)")
    return [int(i) for i in ids]


def _column(page: Any, label: str) -> Any:
    return page.locator("#results-table thead th").filter(
        has=page.locator("span.label", has_text=re.compile("^" + re.escape(label) + "$")))


def _ticks(plot: Any, axis: str = "x") -> list[tuple[float, str]]:
    """The tick labels of an axis of a plot (``x``, ``x2``: the labelled values at the right,
    ``x3``: the 0 of a log axis at the left), left to right, with their x on the page."""
    found = plot.locator(f"g.{axis}tick text").evaluate_all(
        "ts => ts.map(t => [t.getBoundingClientRect().left, t.textContent])")
    return sorted((float(x), str(t)) for x, t in found)


def _plot(page: Any, metric: str, key: str) -> Any:
    return page.locator(f".plot[data-title='{metric} vs {key}']")


def test_the_page_in_chromium(sweep: Path, page: Page) -> None:
    url = page.open(sweep / "report.html")
    p = page.page
    # metrics (acc, <b>loss</b>, fit_time) x their keys (model, lr): 2 plots each
    assert p.locator(".plot[data-metric][data-rendered]").count() == 2 * 3

    # one row per experiment, ranked by acc (larger is better), the unfinished ones last;
    # clicking a header sorts by it (ascending, again: descending)
    assert _row_ids(p) == ACC_RANKED
    assert p.eval_on_selector_all("#best-list li", "ls => ls.map(l => l.dataset.id)") == \
        ["0", "1", "2", "3", "4"]
    acc = _column(p, "acc")
    acc.locator("span.label").click()
    assert _row_ids(p) == [4, 3, 2, 1, 0, 5, 6]
    acc.locator("span.label").click()
    assert _row_ids(p) == ACC_RANKED
    # the best acc is the largest; flipping the direction moves the highlight
    best = "#results-table tbody td.best"
    where = "ts => ts.map(t => t.parentNode.dataset.id)"
    column = p.evaluate("Array.from(document.querySelectorAll('#results-table th'))"
                        ".findIndex(th => th.dataset.col === 'm0') + 1")
    best_acc = f"#results-table tbody td:nth-child({column}).best"
    assert p.eval_on_selector_all(best_acc, where) == ["0"]
    acc.locator("button.direction").click()
    assert p.eval_on_selector_all(best_acc, where) == ["4"]
    assert p.locator(best).count() >= 2
    p.fill("#filter", "small")
    assert sorted(_row_ids(p)) == [1, 2]
    p.fill("#filter", "")

    # every plot has one point per experiment with metrics, and its repetitions beside it;
    # lr on a log axis, model as labelled positions
    for div in p.query_selector_all(".plot[data-metric]"):
        means = div.evaluate("d => d.data.filter(t => t.name !== 'repetitions')"
                             ".reduce((n, t) => n + t.x.length, 0)")
        reps = div.evaluate("d => d.data.filter(t => t.name === 'repetitions')"
                            ".reduce((n, t) => n + t.x.length, 0)")
        assert (means, reps) == (WITH_METRICS, 2 * WITH_METRICS), div.get_attribute("data-title")
        lr = div.get_attribute("data-key") == "1"
        assert div.evaluate("d => d._fullLayout.xaxis.type") == ("log" if lr else "linear")

    # hovering a point shows that experiment's config, as text
    plot = _plot(p, "acc", "lr")
    plot.scroll_into_view_if_needed()
    boxes = [b for b in (pt.bounding_box() for pt in
                         plot.locator(".scatterlayer .trace").first.locator(".point").all()) if b]
    box = min(boxes, key=lambda b: b["x"])  # the smallest lr: experiment 0
    p.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    p.wait_for_selector("#tooltip:not([hidden])", timeout=10_000)
    tip = p.inner_text("#tooltip")
    assert "experiment 0" in tip and f"model = {XSS_VALUE}" in tip and "lr = 0.0001" in tip

    # the best configs: the done experiments, best first (acc flipped: smaller is better)
    assert p.eval_on_selector_all("#best-list li", "ls => ls.map(l => l.dataset.id)") == \
        ["4", "3", "2", "1", "0"]

    # failures by kind with their first error line and run folder
    exception_rows = p.locator("table.failures[data-kind='exception'] tbody tr")
    assert exception_rows.count() == 2
    assert XSS_MESSAGE in exception_rows.first.inner_text()
    assert str(sweep / "5") in exception_rows.first.inner_text()
    assert p.locator("table.failures[data-kind='timeout'] tbody tr").count() == 2

    # hostile strings are text: nothing ran, no element was made from them
    assert XSS_VALUE in p.inner_text("#results-table")
    assert any(LOSS in t for t in page.texts(".plot text"))
    assert p.evaluate("document.querySelectorAll('img, b').length") == 0
    assert p.evaluate("document.scripts.length") == 3
    assert page.dialogs == []
    assert page.console == []
    assert page.requests == [url]


def test_timed_out_runs_count_in_compute_time_and_slowest_runs(sweep: Path,
                                                               page: Page) -> None:
    page.open(sweep / "report.html")
    slowest = page.page.eval_on_selector_all(
        "#slowest-table tbody tr", "rs => rs.map(r => Array.from(r.cells, c => c.textContent))")
    timed_out = [row for row in slowest if row[0].startswith("6/")]
    assert len(timed_out) == 2 and all(row[1] == "timeout" for row in timed_out), slowest
    assert all(float(row[2].split()[0]) >= TIMEOUT * 0.9 for row in timed_out), timed_out
    assert slowest[0][0].startswith("6/")  # the slowest runs of the sweep
    compute = page.page.eval_on_selector_all(
        "#overview-list dt", "ds => ds.find(d => d.textContent === 'compute time')"
        ".nextElementSibling.textContent")
    assert float(compute.split()[0]) >= 2 * TIMEOUT * 0.9


MARKUP = ['<a href="https://example.com/">click</a>', "<b>bold</b>", "x<br>y", "a &lt; b",
          XSS_VALUE]


def test_config_values_are_text_everywhere(tmp_path: Path, page: Page) -> None:
    """A config value holding markup shows as that text in the table, the axis labels, the
    legends and the tooltip; no element is made of it (Plotly reads a few tags)."""
    cfgs = [{"model": m, "lr": lr} for m in MARKUP for lr in (0.1, 1.0)]
    out = write_sweep(tmp_path / "out", cfgs, lambda i, c, rep: {"acc": 0.5 + i / 100 + rep / 1000})
    page.open(Path(write_report(out)))
    p = page.page
    labels = [t for _, t in _ticks(_plot(p, "acc", "model"))]
    shown = [m if len(m) <= 24 else m[:23] + "…" for m in MARKUP]  # the tooltip has the rest
    assert sorted(labels) == sorted(shown) and "a &lt; b" in labels
    assert all(m in p.inner_text("#results-table") for m in MARKUP)
    p.select_option("#color-by", label="model")
    p.wait_for_selector("body[data-plots=drawn]")
    legend = page.texts(".plot[data-title='acc vs lr'] .legend text")
    assert {"model=a &lt; b", "model=x<br>y", 'model=<a href="https://exampl…'} <= set(legend)
    assert p.evaluate("document.querySelectorAll('a[href^=http], b, br, img').length") == 0
    assert p.evaluate("document.querySelectorAll('svg a, svg tspan[style*=bold]').length") == 0
    assert page.dialogs == [] and page.console == []


GRID_DEPTHS = [None, 2, 4, 8, 16, 32]
GRID_DECAYS = [0, 1e-4, 1e-3, 1e-2, 0.1]


def _grid_scores(i: int, cfg: dict[str, Any], rep: int) -> dict[str, float | None]:
    depth = cfg["max_depth"] or 64
    spread = 2.8 if rep == 0 else 0.1  # the std of loss exceeds its mean: mean - std < 0
    return {"acc": 0.5 + 0.01 * math.log2(depth) + 0.001 * rep,
            "loss": 10.0 ** (-(i % 4)) * spread,
            "auc": None if rep == 1 and i == 3 else 0.7 + 0.001 * i}


def _grid_sweep(out: Path) -> Path:
    cfgs = [{"max_depth": d, "weight_decay": w, "alpha": a}
            for d in GRID_DEPTHS for w in GRID_DECAYS for a in (0.5, 2.0, "auto")][:60]
    return write_sweep(out, cfgs, _grid_scores)


def test_grids_keep_numeric_order_and_log_axes(tmp_path: Path, page: Page) -> None:
    """None among numbers, a 0 in a log grid, a string among numbers: numbers on a numeric
    axis in numeric order, the others labelled at the side; error bars in colour and
    within the plot; legends; nothing in the console."""
    page.open(Path(write_report(_grid_sweep(tmp_path / "out"))))
    p = page.page
    depth = _plot(p, "acc", "max_depth")
    assert depth.evaluate("d => d._fullLayout.xaxis.type") == "linear"
    numbers = [float(t) for _, t in _ticks(depth)]
    assert numbers == sorted(numbers) and len(numbers) >= 3
    assert [t for _, t in _ticks(depth, "x2")] == ["None"]
    assert _ticks(depth, "x2")[0][0] > _ticks(depth)[-1][0]  # None right of the numbers

    decay = _plot(p, "acc", "weight_decay")
    assert decay.evaluate("d => d._fullLayout.xaxis.type") == "log"
    assert [t for _, t in _ticks(decay, "x3")] == ["0"]
    assert _ticks(decay, "x3")[0][0] < _ticks(decay)[0][0]  # 0 left of the log axis
    assert [t for _, t in _ticks(_plot(p, "acc", "alpha"), "x2")] == ["auto"]

    # loss spans decades: a log axis, every error bar inside the plot area
    loss = _plot(p, "loss", "max_depth")
    assert loss.evaluate("d => d._fullLayout.yaxis.type") == "log"
    area = loss.locator(".nsewdrag").first.bounding_box()
    assert area is not None
    bars = loss.locator(".errorbar path").evaluate_all(
        "ps => ps.map(p => { const b = p.getBoundingClientRect(); return [b.top, b.bottom]; })")
    assert bars
    for top, bottom in bars:
        assert area["y"] - 1 <= top and bottom <= area["y"] + area["height"] + 1, (top, area)
    # error bars in their trace's colour; a legend of the states and the repetitions
    colors = loss.evaluate("d => d._fullData.filter(t => t.error_y && t.error_y.visible)"
                           ".map(t => [t.error_y.color, t.marker.color])")
    assert colors and all(e == m for e, m in colors)
    legend = page.texts(".plot[data-title='loss vs max_depth'] .legend text")
    assert {"done", "repetitions"} <= set(legend)

    # a mean over fewer values than repetitions done says so
    auc = _column(p, "auc")
    assert auc.count() == 1
    cells = p.eval_on_selector_all("#results-table tbody tr[data-id='3'] td",
                                   "ts => ts.map(t => t.textContent)")
    assert any(c.endswith("(2/3)") for c in cells), cells
    assert page.console == [], page.console


def _wide_scores(i: int, cfg: dict[str, Any], rep: int) -> dict[str, float | None]:
    return {"acc": 0.5 + 0.004 * ((i * 7) % 40) + 0.0001 * rep, "f1": 0.3 + 0.01 * cfg["k00"],
            "tied": 1.0, "loss": 1.0 / (1 + i), "latency": 0.1 * (1 + i % 3)}


def test_metrics_first_plots_chosen_and_ranked(tmp_path: Path, page: Page) -> None:
    """40 experiments x 63 varied keys x 5 metrics, one value of 400 characters: every metric
    column in view at 1280 px, the best first, a tied metric not highlighted, a few plots
    per metric (the others a choice away), best configs of done experiments only."""
    long_value = "v" * 400
    cfgs = [{**{f"k{j:02d}": (i * (j + 1)) % 5 for j in range(62)},
             "note": long_value if i == 0 else f"short {i}"} for i in range(40)]
    out = write_sweep(tmp_path / "out", cfgs, _wide_scores, not_done=frozenset({5}))
    page.open(Path(write_report(out)))
    p = page.page
    assert p.viewport_size is not None and p.viewport_size["width"] == 1280
    for name in ("acc", "f1", "tied", "loss", "latency"):
        th = _column(p, name)
        box = th.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280, (name, box)
    first = p.locator("#results-table tbody tr").first
    for cell in first.locator("td").all()[:6]:
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280
    # ranked by acc, the first metric: its best experiment on the first row
    best_acc = max((i for i in range(40) if i != 5),
                   key=lambda i: _wide_scores(i, cfgs[i], 0)["acc"] or 0.0)
    assert _row_ids(p)[0] == best_acc
    assert p.eval_on_selector_all("#best-list li", "ls => ls.map(l => l.dataset.id)")[0] == \
        str(best_acc)
    assert "5" not in p.eval_on_selector_all("#best-list li", "ls => ls.map(l => l.dataset.id)")
    # a metric that is the same everywhere: nothing is best
    tied = p.evaluate("Array.from(document.querySelectorAll('#results-table th'))"
                      ".findIndex(th => th.textContent.startsWith('tied')) + 1")
    assert p.locator(f"#results-table tbody td:nth-child({tied}).best").count() == 0
    # a few plots per metric, the others a choice away
    plots = p.locator(".plot[data-metric]").count()
    assert plots <= 5 * 4, plots
    assert p.evaluate("document.getElementsByTagName('*').length") < 20_000
    more = p.locator(".metric-plots[data-metric='0'] select.more-keys option")
    assert more.count() > 40  # 51 varied keys, 4 of them plotted
    # the column chooser shows a hidden key
    assert _column(p, "k61").count() == 0 or _column(p, "k61").is_visible()
    p.click("#column-chooser summary")
    p.click("#columns-all")
    assert _column(p, "k61").count() == 1
    assert page.console == [], page.console


def test_a_running_sweep_says_so(tmp_path: Path, page: Page) -> None:
    out = _grid_sweep(tmp_path / "out")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom dagrun.disk.layout import SweepDir\n"
         "from dagrun.disk.lock import driver_lock\n"
         "with driver_lock(SweepDir.at(sys.argv[1])):\n"
         "    print('held', flush=True)\n    sys.stdin.read()\n", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        report = Path(write_report(out))
    finally:
        holder.communicate("", timeout=30)
    page.open(report)
    banner = page.page.locator("#running")
    assert banner.is_visible()
    assert f"pid {holder.pid}" in banner.inner_text()
    assert page.page.title().startswith("(running)")
    page.open(Path(write_report(out)))  # the driver is gone
    assert not page.page.locator("#running").is_visible()
    # no driver, but a worker holds a run of experiment 0 (its line not written yet)
    sweep = SweepDir.at(str(out))
    results = Path(sweep.results).read_text(encoding="utf-8").splitlines(keepends=True)
    Path(sweep.results).write_text("".join(results[1:]), encoding="utf-8")
    lease = Path(sweep.run_dir(0, 0, 3).lease)
    lease.parent.mkdir(parents=True, exist_ok=True)
    lease.write_text("{}", encoding="utf-8")
    page.open(Path(write_report(out)))
    assert "1 experiment(s) have a run a worker executes now" in \
        page.page.locator("#running").inner_text()
