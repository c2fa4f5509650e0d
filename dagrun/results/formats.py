"""The results table as text: an aligned terminal table, Markdown, LaTeX, CSV or JSON.

CSV and JSON keep the table's columns (``mean_M`` and ``std_M`` side by side, full
precision) so they parse back to the same values. The terminal table, Markdown and LaTeX are
for people: a metric's mean and std share one column ``M`` as ``mean ± std``, rounded to two
significant digits of the std (LaTeX: ``$mean \\pm std$``, ready for a paper; it uses booktabs).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dagrun.disk.atomic import strict_json

if TYPE_CHECKING:
    from dagrun.results.table import Table

FORMATS = ("table", "markdown", "latex", "csv", "json")
_NUMBER_TYPES = {int, float, type(None)}

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def format_results(table: Table, fmt: str) -> str:
    """The table in ``fmt`` (one of ``FORMATS``), ending with a newline."""
    columns = table.columns
    if fmt == "csv":
        return _csv(columns)
    if fmt == "json":
        return _json(columns)
    headers, cells, numeric = _display(columns, table.metrics, table.single, fmt == "latex")
    if fmt == "markdown":
        return _markdown(headers, cells, numeric)
    if fmt == "latex":
        return _latex(headers, cells, numeric)
    return _aligned(headers, cells, numeric)


# --------------------------------------------------------------------------------------------
# CSV and JSON: the columns as they are.

def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)  # ints, booleans (true/false), lists and dicts as JSON


def _csv_column(values: list[Any]) -> list[str]:
    """A column's cells; a column of one plain type (the usual case) in one pass."""
    kinds = {type(v) for v in values} - {type(None)}
    if kinds <= {float}:
        return ["" if v is None else repr(v) for v in values]
    if kinds <= {int}:  # not bool: its type is not int, and JSON writes it true/false
        return ["" if v is None else str(v) for v in values]
    if kinds <= {str}:
        return ["" if v is None else v for v in values]
    return [_csv_cell(v) for v in values]


def _csv(columns: dict[str, list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*(_csv_column(col) for col in columns.values()), strict=True))
    return buf.getvalue()


def _json(columns: dict[str, list[Any]]) -> str:
    """One array of objects keyed by the csv columns, one object per line; strict JSON (a
    config value of inf, which JSON cannot hold, is null)."""
    names = list(columns)
    rows = []
    for values in zip(*columns.values(), strict=True):
        row = dict(zip(names, values, strict=True))
        try:
            rows.append(json.dumps(row, allow_nan=False))
        except ValueError:
            rows.append(json.dumps(strict_json(row), allow_nan=False))
    return "[" + ",\n ".join(rows) + "]\n"


# --------------------------------------------------------------------------------------------
# For people: metrics as mean ± std.

def number(value: Any) -> str:
    """A cell's text: ints as they are, floats to 6 significant digits (a whole number keeps
    its ``.0``: ``100.0``), None empty, lists and dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _whole(f"{value:.6g}")
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _whole(text: str) -> str:
    """``100`` -> ``100.0``: a float written without a point or exponent (not inf/nan)."""
    return text if "." in text or "e" in text or "n" in text else text + ".0"


def plus_minus(mean: Any, std: Any, sep: str = " ± ") -> str:
    """``0.912 ± 0.0023``: the mean rounded to two significant digits of the std."""
    if mean is None:
        return ""
    if std is None or not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        return number(mean) if std is None else f"{number(mean)}{sep}0"
    decimals = min(12, max(0, 1 - math.floor(math.log10(std))))
    return f"{mean:.{decimals}f}{sep}{std:.{decimals}f}"


def _plus_minus_column(means: list[Any], stds: list[Any], sep: str) -> list[str]:
    """``plus_minus`` of each row, the usual rows (a float mean, a float std >= 0) inline."""
    out: list[str] = []
    append, log10, floor, inf = out.append, math.log10, math.floor, math.inf
    for mean, std in zip(means, stds, strict=True):
        if type(mean) is float and type(std) is float and 0.0 <= std < inf:
            if std == 0.0:
                append(_whole(f"{mean:.6g}") + sep + "0")
                continue
            decimals = 1 - floor(log10(std))
            decimals = 0 if decimals < 0 else 12 if decimals > 12 else decimals
            # %-formatting takes the precision as an argument: a third faster than an f-string
            append("%.*f%s%.*f" % (decimals, mean, sep, decimals, std))  # noqa: UP031
        else:
            append(plus_minus(mean, std, sep))
    return out


def _display(columns: dict[str, list[Any]], metrics: Sequence[str], single: bool,
             latex: bool) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, cell texts column by column, and which columns hold numbers."""
    text: Callable[[Any], str] = _latex_text if latex else number
    headers, cells, numeric = [], [], []
    pairs = {f"mean_{m}": m for m in metrics if not single and f"std_{m}" in columns}
    skip = {f"std_{m}" for m in pairs.values()}
    for name, values in columns.items():
        if name in skip:
            continue
        if name in pairs:
            stds = columns[f"std_{pairs[name]}"]
            shown = _plus_minus_column(values, stds, r" \pm " if latex else " ± ")
            if latex:
                shown = [f"${c}$" if c else "" for c in shown]
            headers.append(pairs[name])
        else:
            shown = _texts(values, text)
            headers.append(name)
        cells.append(shown)
        numeric.append(name in pairs or set(map(type, values)) <= _NUMBER_TYPES)
    return headers, cells, numeric


def _texts(values: list[Any], text: Callable[[Any], str]) -> list[str]:
    """The cells of one column (the common column types without a call per cell)."""
    types = set(map(type, values))
    if types <= {str} and text is number:
        return values
    if types <= {int}:
        return list(map(str, values))
    if types <= {float}:
        shown = list(map("{:.6g}".format, values))
    elif types <= {float, type(None)}:
        shown = ["" if v is None else f"{v:.6g}" for v in values]
    else:
        return [text(v) for v in values]
    # _whole, inline: a call per cell costs a tenth of this path at 100,000 rows
    return [t if "." in t or "e" in t or "n" in t or not t else t + ".0" for t in shown]


def _rows(cells: list[list[str]]) -> list[list[str]]:
    return [list(r) for r in zip(*cells, strict=True)] if cells else []


def _aligned(headers: list[str], cells: list[list[str]], numeric: list[bool]) -> str:
    """Columns two spaces apart, numbers right-aligned: one ``%`` format per row."""
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(headers, cells,
                                                                          strict=True)]
    row = "  ".join(f"%{w}s" if num else f"%-{w}s" for w, num in zip(widths, numeric,
                                                                    strict=True))
    lines = [(row % tuple(headers)).rstrip()]
    lines.extend((row % values).rstrip() for values in zip(*cells, strict=True))
    return "\n".join(lines) + "\n"


def _markdown_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _markdown(headers: list[str], cells: list[list[str]], numeric: list[bool]) -> str:
    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(_markdown_text(c) for c in row) + " |"

    rule = "|" + "|".join(" ---: " if num else " --- " for num in numeric) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in _rows(cells))]) + "\n"


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX's text mode (underscores in names, ``%``, ``&``, ...)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text.replace("\n", " "))


def _latex_text(value: Any) -> str:
    return latex_escape(number(value))


def _latex(headers: list[str], cells: list[list[str]], numeric: list[bool]) -> str:
    spec = "".join("r" if num else "l" for num in numeric)
    lines = [r"% dagrun results; needs \usepackage{booktabs}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    lines.extend(" & ".join(row) + r" \\" for row in _rows(cells))
    lines.extend([r"\bottomrule", r"\end{tabular}"])
    return "\n".join(lines) + "\n"
