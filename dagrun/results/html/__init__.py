"""``dagrun report``: one self-contained HTML page about a sweep.

The page opens from ``file://`` with no network at all: its style, Plotly (the optional
``report`` extra ships ``plotly.min.js``), the page's own script and the data are all inlined.
The data is embedded once, as JSON in a ``<script type="application/json">`` element with
``<``, ``>`` and ``&`` written as ``\\u003c``, ``\\u003e`` and ``\\u0026``, so no config value,
metric name or error message can end the element or be read as markup; the script builds
the page with ``textContent``, never ``innerHTML``.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.errors import DagrunError

HERE = Path(__file__).parent
INSTALL_HINT = "dagrun report needs the report extra: pip install 'dagrun[report]'"


class ReportUnavailable(DagrunError, ImportError):
    """The report extra (Plotly) is not installed."""


def available() -> bool:
    """Whether the report extra is installed (checked without importing it)."""
    return importlib.util.find_spec("plotly") is not None


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The text of ``plotly.min.js`` as the plotly package ships it."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ReportUnavailable(INSTALL_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ReportUnavailable(f"{INSTALL_HINT} (the installed plotly has no plotly.min.js)")


def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` left in it."""
    text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _inline_script(source: str) -> str:
    """Script text that cannot close its element early (``</script`` -> ``<\\/script``)."""
    return re.sub(r"</(script)", r"<\\/\1", source, flags=re.IGNORECASE)


def render(data: dict[str, Any]) -> str:
    """The page for ``data`` (see ``dagrun.results.html.data.report_data``)."""
    parts = {
        "TITLE": html.escape(f"dagrun report: {data.get('out', '')}"),
        "CSS": (HERE / "report.css").read_text(encoding="utf-8"),
        "PLOTLY": _inline_script(plotly_js()),
        "APP": _inline_script((HERE / "report.js").read_text(encoding="utf-8")),
        "DATA": embed_json(data),
    }
    template = (HERE / "template.html").read_text(encoding="utf-8")
    # one pass: text put in is never scanned for placeholders again
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: parts[m.group(1)], template)


def write_report(out: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None,
                 in_driver: bool = False) -> str:
    """Write the report of the sweep in ``out`` to ``dest`` (default ``OUT/report.html``);
    returns its path. ``in_driver``: written by the driver at the end of its execute (see
    ``report_data``)."""
    from dagrun.results.html.data import report_data

    if not available():
        raise ReportUnavailable(INSTALL_HINT)
    page = render(report_data(out, in_driver=in_driver))
    path = os.path.abspath(os.fspath(dest)) if dest is not None else SweepDir.at(out).report
    atomic.write_text(path, page)
    return path


def after_execute(sweep: SweepDir, enabled: bool, verbose: bool) -> str | None:
    """The report written at the end of an execute in which some run executed, when the
    report extra is installed and basecfg ``report`` is not False. A report that cannot be
    written is a warning: the sweep's results are already safe on disk."""
    if not enabled or not available():
        return None
    try:
        path = write_report(sweep.path, in_driver=True)
    except (OSError, ValueError, DagrunError) as exc:
        warnings.warn(f"the report could not be written: {exc}", UserWarning, stacklevel=2)
        return None
    if verbose:
        print(f"Report: {path}", file=sys.stderr, flush=True)
    return path
