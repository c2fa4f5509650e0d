"""The results table as text: an aligned terminal table, Markdown, LaTeX, CSV or JSON.

CSV and JSON keep the table's columns (``mean_M`` and its spread side by side, ``n_M`` where
it says something, full precision) so they parse back to the same values. The terminal
table, Markdown and LaTeX are for people: a metric's mean and spread share one column
``M ± std`` (or ``sem``, ``ci95``) as ``mean ± spread``: the spread to two significant
digits and the mean to the same decimal place (a spread below 1e-12 of the mean is 0, and a
mean without spread has four significant digits); ``(2/3)`` follows a mean that only 2 of the
3 repetitions done entered (the others were NaN, inf or not numbers); one repetition shows no
spread. The terminal aligns a column on its ``±``. LaTeX writes ``$mean \\pm spread$`` in a
booktabs tabular with every special character of text escaped; ``bold_best`` sets the best
mean of each metric (among the experiments ranking considers) in bold in LaTeX and Markdown.

Config values are shown so that different values look different: floats in full (``0.1``
and ``0.1000000000001``), ``inf``/``nan``, text that would read as something else in quotes
(``"0.1"``, ``"true"``), newlines and other control characters escaped (``\\n``); the
terminal measures East Asian wide characters as two columns and cuts long values with ``…``.
A large terminal table is formatted in parts by several processes at once
(``dagrun.results.inparts``): the same text.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import marshal
import math
import operator
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dagrun.disk.atomic import strict_json
from dagrun.results import inparts

if TYPE_CHECKING:
    from dagrun.results.table import Table

FORMATS = ("table", "markdown", "latex", "csv", "json")
CELL_WIDTH = 40  # terminal: a longer value is cut to this many columns, ending with …
PLUS_MINUS = " ± "
_NUMBER_TYPES = {int, float, type(None)}

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "|": r"\textbar{}", "<": r"\textless{}",
                  ">": r"\textgreater{}", '"': r"\texttt{\char34}"}
_MARKDOWN_ESCAPES = {"\\": "\\\\", "|": "\\|", "*": "\\*", "_": "\\_", "`": "\\`",
                     "[": "\\[", "]": "\\]", "$": "\\$", "~": "\\~", "<": "&lt;", ">": "&gt;",
                     "&": "&amp;"}


def format_results(table: Table, fmt: str, bold_best: bool = False) -> str:
    """The table in ``fmt`` (one of ``FORMATS``), ending with a newline; ``bold_best``:
    the best mean of each metric in bold (LaTeX and Markdown)."""
    columns = table.columns
    if fmt == "csv":
        return _csv(columns)
    if fmt == "json":
        return _json(columns)
    if fmt == "markdown":
        return _markdown(*_display(table, "markdown", bold_best))
    if fmt == "latex":
        return _latex(*_display(table, "latex", bold_best))
    return _aligned(table)


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
    value JSON cannot hold, inf or NaN, is null)."""
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
# Numbers for people.

def mean_text(mean: float) -> str:
    """A mean without a spread: four significant digits (``0.9591``, ``12.30``,
    ``1.500e-07``); from 10,000 on the whole number (``12346``)."""
    if mean == 0:
        return "0"
    if not math.isfinite(mean):
        return repr(mean)
    size = abs(mean)
    if 1e-4 <= size < 1e4:
        text = f"{mean:#.4g}"
        if "e" not in text:
            return text[:-1] if text.endswith(".") else text
    if 1e-4 <= size < 1e9:
        return f"{mean:.0f}"
    return f"{mean:.3e}"


def _mean_texts(means: list[Any]) -> list[str]:
    """``mean_text`` of a column (a bound format per cell in the usual range)."""
    fmt = "{:#.4g}".format
    texts = [fmt(m) if type(m) is float and (1e-4 <= m < 1e4 or -1e4 < m <= -1e-4)
             else "" if m is None or type(m) not in (int, float) else mean_text(float(m))
             for m in means]
    return [mean_text(m) if t.endswith(".") or "e" in t else t
            for t, m in zip(texts, means, strict=True)]


def pair_text(mean: float, spread: float | None) -> tuple[str, str]:
    """The texts of a mean and its spread: the spread to two significant digits, the mean
    to the same decimal place (``("0.9123", "0.0023")``); a spread of 0, or below 1e-12 of
    the mean: ``(mean_text(mean), "0")``; no spread: ``(mean_text(mean), "")``. Very large
    or small numbers share an exponent (``("1.230e-20", "0.050e-20")``)."""
    if spread is None or not math.isfinite(spread) or spread < 0:
        return mean_text(mean), ""
    if spread == 0 or spread < 1e-12 * abs(mean):
        return mean_text(mean), "0"
    decimals = 1 - math.floor(math.log10(spread))
    if spread * 10.0 ** decimals >= 99.5:  # two digits round up to three (0.0996 -> 0.10)
        decimals -= 1
    rounded = round(spread, decimals)
    size = max(abs(mean), rounded)
    if decimals > 9 or size >= 1e9:
        exp = math.floor(math.log10(size))
        digits = max(0, decimals + exp)
        scale = 10.0 ** exp
        return (f"{mean / scale:.{digits}f}e{exp:+03d}", f"{rounded / scale:.{digits}f}e{exp:+03d}")
    if decimals >= 0:
        return f"{mean:.{decimals}f}", f"{rounded:.{decimals}f}"
    return f"{round(mean, decimals):.0f}", f"{round(rounded, decimals):.0f}"


def plus_minus(mean: Any, std: Any, sep: str = PLUS_MINUS) -> str:
    """``0.912 ± 0.0023``-style text of one cell (``pair_text``); empty without a mean."""
    if mean is None or not isinstance(mean, (int, float)):
        return ""
    m, s = pair_text(float(mean), std if isinstance(std, (int, float)) else None)
    return f"{m}{sep}{s}" if s else m


# --------------------------------------------------------------------------------------------
# Config values for people.

_AMBIGUOUS = re.compile(r"\s*[-+]?(?:(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:e[-+]?\d[\d_]*)?"
                        r"|inf(?:inity)?|nan)\s*|true|false|null|none|", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


# Text that value_text does not show as it is (a cheap test per cell of a text column).
_NOT_PLAIN = re.compile(r"\A(?:[\s'\"]|(?:" + _AMBIGUOUS.pattern + r")\Z)|\s\Z|"
                        + _CONTROL.pattern, re.IGNORECASE)


def value_text(value: Any) -> str:
    """A config value (or any cell that is not a metric) as text, so that values that
    differ look different: ``None`` empty, booleans ``true``/``false``, ints as they are,
    floats in full (``repr``: ``0.1``, ``1e-05``, ``inf``, ``nan``), text as it is unless it
    would read as a number, boolean or null, or is empty or padded (then in quotes, as
    JSON), lists and dicts as JSON; control characters escaped (``\\n``)."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        if _AMBIGUOUS.fullmatch(value) or value[:1] in ("'", '"') \
                or value != value.strip():
            return json.dumps(value, ensure_ascii=False)
        return _CONTROL.sub(_escape, value) if _CONTROL.search(value) else value
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        return repr(value)
    if kind is int:
        return str(value)
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, allow_nan=True, default=str)
        return _CONTROL.sub(_escape, text)
    return _CONTROL.sub(_escape, str(value))


def number(value: Any) -> str:
    """A cell's text (``value_text``)."""
    return value_text(value)


def _escape(found: re.Match[str]) -> str:
    ch = found.group()
    return _CONTROL_NAMES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 256
                                      else f"\\u{ord(ch):04x}")


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide and full-width characters two,
    combining marks none."""
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def truncate(text: str, width: int = CELL_WIDTH) -> str:
    """``text`` cut to ``width`` terminal columns, ending with ``…`` when cut."""
    if (len(text) <= width and text.isascii()) or display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _texts(values: list[Any]) -> list[str]:
    """The cells of one column (the common column types without a call per cell)."""
    types = set(map(type, values))
    if types <= {int}:
        return list(map(str, values))
    if types <= {float}:
        return list(map(repr, values))
    if types <= {float, type(None)}:
        return ["" if v is None else repr(v) for v in values]
    if types <= {int, type(None)}:
        return ["" if v is None else str(v) for v in values]
    if types <= {str}:  # each distinct text tested once
        search = _NOT_PLAIN.search
        shown = {v: value_text(v) if search(v) else v for v in set(values)}
        return list(map(shown.__getitem__, values))
    return [value_text(v) for v in values]


# --------------------------------------------------------------------------------------------
# The table for people: metrics as mean ± spread.

_FIXED = tuple(f"%.{d}f" for d in range(10))  # a mean and spread to d decimals


def _metric_parts(means: list[Any], spreads: list[Any] | None, counts: list[Any] | None,
                  done: list[Any] | None) -> tuple[list[str], list[str], list[str]]:
    """Per row: the mean's text, the spread's text ('' for none) and the ``(n/done)`` note
    ('' when every value done entered the mean), from a metric's means, spreads, counts
    (``n_M``) and repetitions done. The usual cell (a float mean, a positive spread of a few
    decimals over at least two values) is formatted inline: at 100,000 rows a call per cell
    is most of the cost. Each row's texts depend on that row alone."""
    size = len(means)
    counts = counts or [None] * size
    done = list(done) if done is not None else [None] * size
    spreads = spreads or [None] * size
    notes = [""] * size
    if counts != done:  # (the rows where they differ, found in C loops)
        for k in itertools.compress(range(size), map(operator.ne, counts, done)):
            c, d = counts[k], done[k]
            if c is not None and d is not None and c < d:
                notes[k] = f"({c}/{d})"
    if not any(s is not None for s in spreads):  # one repetition everywhere: means alone
        return _mean_texts(means), [""] * size, notes
    mean_parts: list[str] = []
    spread_parts: list[str] = []
    add_mean, add_spread = mean_parts.append, spread_parts.append
    log10, floor, inf = math.log10, math.floor, math.inf
    fixed = _FIXED
    alone: dict[float, str] = {}  # mean_text of the means with a spread of 0, by value
    for mean, spread, count in zip(means, spreads, counts, strict=True):
        if type(mean) is float and type(spread) is float and 0.0 < spread < inf \
                and (count is None or count > 1) and -1e9 < mean < 1e9 \
                and spread >= 1e-12 * abs(mean):
            decimals = 1 - floor(log10(spread))
            if spread * 10.0 ** decimals >= 99.5:  # rounds up to three digits: one less
                decimals -= 1
            if 0 <= decimals <= 9:
                form = fixed[decimals]
                add_mean(form % mean)
                add_spread(form % spread)
                continue
        elif spread == 0.0 and type(mean) is float and type(spread) is float \
                and (count is None or count > 1):
            text = alone.get(mean)  # (equal floats have one text: 0.0 and -0.0 are "0")
            if text is None:
                text = alone[mean] = mean_text(mean)
            add_mean(text)
            add_spread("0")
            continue
        if mean is None or type(mean) not in (int, float):
            add_mean("")
            add_spread("")
            continue
        if count is not None and count < 2:
            spread = None  # one value: no spread to show
        m, s = pair_text(float(mean), spread)
        add_mean(m)
        add_spread(s)
    return mean_parts, spread_parts, notes


def _metric_header(metric: str, spread: str, spread_shown: bool) -> str:
    """A metric's column header: ``acc ± std`` where some row shows a spread, else ``acc``."""
    return f"{metric}{PLUS_MINUS}{spread}" if spread_shown else metric


def _metric_cells(parts: tuple[list[str], list[str], list[str]], fmt: str,
                  bold: list[bool] | None) -> list[str]:
    """Markdown's and LaTeX's metric cells: ``mean ± spread`` and the note, as markup."""
    means, spreads, notes = parts
    out = []
    for k, (m, s, n) in enumerate(zip(means, spreads, notes, strict=True)):
        strong = bold is not None and bold[k] and m != ""
        if fmt == "latex":
            text = f"{_latex_number(m)} \\pm {_latex_number(s)}" if s else _latex_number(m)
            text = (f"$\\mathbf{{{text}}}$" if strong else f"${text}$") if m else ""
        else:
            text = f"{m}{PLUS_MINUS}{s}" if s else m
            text = f"**{text}**" if strong else text
        out.append(f"{text} {n}".strip() if n else text)
    return out


def _latex_number(text: str) -> str:
    """``1.230e-20`` -> ``1.230 \\cdot 10^{-20}`` (math mode)."""
    mantissa, sep, exp = text.partition("e")
    return f"{mantissa} \\cdot 10^{{{int(exp)}}}" if sep else text


def _layout(table: Table) -> list[tuple[str, str | None]]:
    """The columns shown, in order: each column's name and the metric whose mean (or single
    value) it holds, ``None`` for the others. A metric's spread and ``n_M`` columns are not
    columns of their own: its mean's cells show them."""
    columns = table.columns
    means: dict[str, str] = {}  # the column holding a metric's mean (or its single value)
    for m in table.metrics:
        name = m if table.single else f"mean_{m}"
        if name in columns:
            means[name] = m
    merged = {f"{table.spread}_{m}" for m in means.values()} | \
        {f"n_{m}" for m in means.values()}
    return [(name, means.get(name)) for name in columns if name in means or name not in merged]


def _part(values: list[Any] | None, lo: int, hi: int) -> list[Any] | None:
    return None if values is None else values[lo:hi]


def _metric_parts_of(table: Table, metric: str, values: list[Any], lo: int, hi: int
                     ) -> tuple[list[str], list[str], list[str]]:
    """``_metric_parts`` of rows ``lo`` to ``hi`` of the column ``values`` (a metric's)."""
    return _metric_parts(values[lo:hi],
                         _part(table.columns.get(f"{table.spread}_{metric}"), lo, hi),
                         _part(table.counts.get(metric), lo, hi), _part(table.done, lo, hi))


def _display(table: Table, fmt: str, bold_best: bool
             ) -> tuple[list[str], list[list[str]], list[bool], list[bool]]:
    """Markdown's and LaTeX's headers, cell texts column by column, which columns hold
    numbers, and which are metrics (their cells are markup already: not escaped)."""
    headers: list[str] = []
    cells: list[list[str]] = []
    numeric: list[bool] = []
    metric_flags: list[bool] = []
    size = len(table)
    for name, metric in _layout(table):
        values = table.columns[name]
        if metric is not None:
            parts = _metric_parts_of(table, metric, values, 0, size)
            bold = table.best.get(metric) if bold_best else None
            cells.append(_metric_cells(parts, fmt, bold))
            headers.append(_metric_header(metric, table.spread, any(parts[1])))
            numeric.append(True)
            metric_flags.append(True)
            continue
        cells.append(_texts(values))
        headers.append(name)
        numeric.append(set(map(type, values)) <= _NUMBER_TYPES)
        metric_flags.append(False)
    return headers, cells, numeric, metric_flags


def _latex_header(header: str) -> str:
    name, sep, spread = header.partition(PLUS_MINUS)
    return f"{latex_escape(name)} ($\\pm$ {spread})" if sep else latex_escape(header)


def _rows(cells: list[list[str]]) -> list[list[str]]:
    return [list(r) for r in zip(*cells, strict=True)] if cells else []


# --------------------------------------------------------------------------------------------
# The terminal table, a part of its rows at a time.

ROWS_PER_PART = 20_000  # rows of the terminal table worth formatting in a process of their own

# What the widths of a part's cells say about a column: a metric's (widest mean, spread and
# note texts, whether some row shows a spread); another column's (widest cell in terminal
# columns, whether every cell is ASCII, whether every value is a number or None).
_Measure = tuple[int, int, int, bool] | tuple[int, bool, bool]
# How a column is laid out over all rows: header, width, right-aligned, ASCII cells, metric,
# and a metric's widest mean, spread and note.
_Layout = tuple[str, int, bool, bool, bool, int, int, int]


def _aligned(table: Table) -> str:
    """The terminal table: columns two spaces apart, numbers right-aligned, widths in
    terminal columns, a metric's cells aligned on the ``±``. Made a part of the rows at a
    time in two steps: each part's cell texts and their widths (``_table_cells``), the
    widths of every part met (``_table_layout``), then each part's lines (``_table_lines``);
    the parts of a large table are made by several processes at once
    (``inparts.map_steps``), and the text is the same however the rows were cut."""
    layout = _layout(table)
    size = len(table)
    bounds = inparts.bounds(size, inparts.count(size, ROWS_PER_PART))
    texts = inparts.map_steps(list(itertools.pairwise(bounds)),
                              lambda rows: _table_cells(table, layout, *rows),
                              lambda measures: _table_layout(table, layout, measures),
                              _table_lines, lambda text: marshal.dumps(text, inparts.MARSHAL),
                              marshal.loads)
    return "".join(texts)


def _table_cells(table: Table, layout: list[tuple[str, str | None]], lo: int, hi: int
                 ) -> tuple[tuple[int, list[Any]], list[_Measure]]:
    """The cell texts of rows ``lo`` to ``hi`` column by column (a metric's as its mean,
    spread and note texts), and each column's measure (``_Measure``)."""
    cells: list[Any] = []
    measures: list[_Measure] = []
    half = CELL_WIDTH // 2  # (20 characters are at most 40 columns wide)
    for name, metric in layout:
        values = table.columns[name]
        if metric is not None:
            parts = _metric_parts_of(table, metric, values, lo, hi)
            means, spreads, notes = parts
            cells.append(parts)
            measures.append((max(map(len, means), default=0), max(map(len, spreads), default=0),
                             max(map(len, notes), default=0), any(spreads)))
            continue
        values = values[lo:hi]
        shown = _texts(values)
        longest = max(map(len, shown), default=0)
        if longest > half:
            shown = [t if len(t) <= half else truncate(t) for t in shown]
            longest = max(map(len, shown), default=0)
        ascii_only = "".join(shown).isascii()
        widest = longest if ascii_only else max(map(display_width, shown), default=0)
        cells.append(shown)
        measures.append((widest, ascii_only, set(map(type, values)) <= _NUMBER_TYPES))
    return (lo, cells), measures


def _table_layout(table: Table, layout: list[tuple[str, str | None]],
                  measures: list[list[_Measure]]) -> list[_Layout]:
    """Each column's ``_Layout`` from every part's measures (``_table_cells``)."""
    out: list[_Layout] = []
    for k, (name, metric) in enumerate(layout):
        found: list[Any] = [part[k] for part in measures]
        if metric is not None:
            wm, ws, wn = (max(m[i] for m in found) for i in range(3))
            header = _metric_header(metric, table.spread, any(m[3] for m in found))
            cell = wm + (ws + len(PLUS_MINUS) if ws else 0) + (wn + 1 if wn else 0)
            out.append((header, max(display_width(header), cell), True, True, True,
                        wm, ws, wn))
            continue
        widest = max(m[0] for m in found)
        out.append((name, max(display_width(name), widest), all(m[2] for m in found),
                    all(m[1] for m in found), False, 0, 0, 0))
    return out


def _table_lines(product: tuple[int, list[Any]], layout: list[_Layout]) -> str:
    """The lines of a part's rows (the header first in the part of the first row), each
    ending with a newline: one ``%`` format per row, after the cells of a column with wide
    characters are padded to the same width by hand (a metric's cells hold digits, ``±``
    and ``e``: one terminal column per character)."""
    lo, cells = product
    specs, headers, texts = [], [], []
    for col, (header, width, right, ascii_only, metric, wm, ws, wn) in \
            zip(cells, layout, strict=True):
        if metric:
            col = _metric_table_cells(col, wm, ws, wn)
        pad = " " * (width - display_width(header))
        headers.append(pad + header if right else header + pad)
        if ascii_only:
            specs.append(f"%{width}s" if right else f"%-{width}s")
            texts.append(col)
            continue
        specs.append("%s")
        texts.append([(" " * (width - w) + t) if right else (t + " " * (width - w))
                      for t, w in zip(col, map(display_width, col), strict=True)])
    row = "  ".join(specs)
    lines = [(row % values).rstrip() for values in zip(*texts, strict=True)]
    if lo == 0:
        lines.insert(0, (row % tuple(headers)).rstrip())
    return "\n".join(lines) + "\n" if lines else ""


def _metric_table_cells(parts: tuple[list[str], list[str], list[str]], wm: int, ws: int,
                        wn: int) -> list[str]:
    """A metric's cells in the terminal table, aligned on the ``±`` (``wm``, ``ws``, ``wn``:
    the widest mean, spread and note of every row): each ``wm + 3 + ws + 1 + wn`` long,
    less the parts no row has."""
    means, spreads, notes = parts
    if not ws and not wn:
        return [m.rjust(wm) for m in means]
    if not wn and all(spreads):  # a spread in every row: one format per cell
        form = f"%{wm}s{PLUS_MINUS}%-{ws}s"
        return [form % pair for pair in zip(means, spreads, strict=True)]
    out = []
    for m, s, n in zip(means, spreads, notes, strict=True):
        cell = m.rjust(wm)
        if ws:
            cell += PLUS_MINUS + s.ljust(ws) if s else " " * (ws + len(PLUS_MINUS))
        if wn:
            cell += " " + n.ljust(wn)
        out.append(cell)
    return out


def markdown_escape(text: str) -> str:
    """``text`` safe in a Markdown table cell: no markup, no raw HTML, no cell break."""
    return "".join(_MARKDOWN_ESCAPES.get(ch, ch) for ch in
                   text.replace("\r", " ").replace("\n", " "))


def _markdown(headers: list[str], cells: list[list[str]], numeric: list[bool],
              metric: list[bool]) -> str:
    def line(row: Sequence[str], escape: Sequence[bool]) -> str:
        return "| " + " | ".join(markdown_escape(c) if e else c
                                 for c, e in zip(row, escape, strict=True)) + " |"

    escape = [not m for m in metric]
    rule = "|" + "|".join(" ---: " if num else " --- " for num in numeric) + "|"
    return "\n".join([line(headers, [True] * len(headers)), rule,
                      *(line(r, escape) for r in _rows(cells))]) + "\n"


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX's text mode, also with the default OT1 font encoding
    (``|``, ``<``, ``>`` and ``"`` would print other glyphs there)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text.replace("\n", " "))


def _latex(headers: list[str], cells: list[list[str]], numeric: list[bool],
           metric: list[bool]) -> str:
    spec = "".join("r" if num else "l" for num in numeric)
    cells = [col if m else [latex_escape(t) for t in col]
             for col, m in zip(cells, metric, strict=True)]
    lines = [r"% dagrun results; needs \usepackage{booktabs}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_header(h) for h in headers) + r" \\", r"\midrule"]
    lines.extend(" & ".join(row) + r" \\" for row in _rows(cells))
    lines.extend([r"\bottomrule", r"\end{tabular}"])
    return "\n".join(lines) + "\n"
