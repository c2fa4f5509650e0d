// The dagrun report page: builds every section from the JSON in #dagrun-data.
// Everything shown comes from user data, so text is only ever set with textContent (and
// title attributes), never as markup; strings handed to Plotly, which reads a few HTML tags
// and entities in labels and legends, are entity-escaped first (plotlyText).
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("dagrun-data").textContent);
  const byId = (id) => document.getElementById(id);
  const STATE_COLORS = { done: "#2f6db5", incomplete: "#e08a00", failed: "#c0392b",
    running: "#7b4fc9", pruned: "#6b7785" };
  const STATE_ORDER = ["done", "running", "incomplete", "pruned", "failed"];
  const PALETTE = ["#2f6db5", "#e08a00", "#2a9d5c", "#c0392b", "#7b4fc9", "#8c564b",
    "#d45fa8", "#6b7785", "#b5a300", "#17a2b8"];
  const PLOTS_PER_METRIC = 4; // plots shown per metric; the other keys are a choice away
  const DENSE = 200; // above this many experiments in a plot: boxes and binned medians
  const KEY_COLUMNS = 8; // config columns shown at first (the chooser has the others)
  const TOP = 5; // best configs listed
  const LABEL_MAX = 24; // characters of a value on an axis (the tooltip has all of it)
  const BINS = 24; // bins of a numeric key in a dense plot
  const PARALLEL_KEYS = 8;

  // ----------------------------------------------------------------------------------------
  // Text.

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function plotlyText(text) { // Plotly labels understand <b>, <br>, &amp;: neutralise them
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function shorten(text, max) {
    const s = String(text);
    return s.length > max ? s.slice(0, max - 1) + "…" : s;
  }

  function axisText(text) { return plotlyText(shorten(text, LABEL_MAX)); }

  function fmtNum(v) {
    if (v === null || v === undefined) return "";
    if (Number.isInteger(v)) return String(v);
    const s = String(v);
    return s.length <= 8 ? s : v.toPrecision(6).replace(/\.?0+(e|$)/, "$1");
  }

  function plusMinus(mean, std) {
    if (mean === null || mean === undefined) return "";
    if (data.single || std === null || std === undefined) return fmtNum(mean);
    if (!(std > Math.abs(mean) * 1e-12)) return fmtNum(mean) + " ± 0"; // 0, or rounding noise
    const decimals = Math.min(12, Math.max(0, 1 - Math.floor(Math.log10(std))));
    return mean.toFixed(decimals) + " ± " + std.toFixed(decimals);
  }

  function special(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }
  function isMissing(v) { return special(v) && v.missing === true; }
  function nonfinite(v) { return special(v) && typeof v.nonfinite === "string" ? v.nonfinite : null; }

  function valueText(v) {
    if (isMissing(v)) return "";
    if (nonfinite(v)) return nonfinite(v);
    if (v === null) return "None";
    if (typeof v === "string") return v;
    if (typeof v === "number") return fmtNum(v);
    return JSON.stringify(v);
  }

  function categoryName(v) { return isMissing(v) ? "(missing)" : valueText(v); }

  function seconds(s) {
    if (s === null || s === undefined) return "";
    if (s < 120) return s.toPrecision(3) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // ----------------------------------------------------------------------------------------
  // Rows: [id, state, n, repetitions, [key values], [[mean, std, n_M, values], ...]].

  const rows = data.rows;
  const metrics = data.metrics;
  const keys = data.keys;
  const smaller = metrics.map((m) => m.smaller);
  const meanOf = (r, mi) => r[5][mi][0];
  const stdOf = (r, mi) => r[5][mi][1];
  const countOf = (r, mi) => r[5][mi][2];
  const valuesOf = (r, mi) => r[5][mi][3] || [];
  const isDone = (r) => r[1] === "done";
  let primary = data.primary === null || data.primary === undefined ? null : data.primary;

  function stateColor(state, i) { return STATE_COLORS[state] || PALETTE[(i + 5) % PALETTE.length]; }

  function spansDecades(values) { // positive values over two decades or more: a log axis
    if (!values.length || values.some((v) => !(v > 0))) return false;
    let lo = Infinity, hi = -Infinity;
    values.forEach((v) => { lo = Math.min(lo, v); hi = Math.max(hi, v); });
    return hi / lo >= 100;
  }

  const metricLog = metrics.map((m, mi) =>
    spansDecades(rows.map((r) => meanOf(r, mi)).filter((v) => v !== null)));

  // ----------------------------------------------------------------------------------------
  // Keys: which values sit on a numeric axis, and the order of the others.

  const collator = new Intl.Collator(undefined, { numeric: true });

  function valueId(v) {
    if (typeof v === "number") return "n" + v;
    if (typeof v === "string") return "s" + v;
    if (v === null) return "null";
    if (isMissing(v)) return "missing";
    if (nonfinite(v)) return "f" + nonfinite(v);
    return "j" + JSON.stringify(v);
  }

  function valueRank(v) { // numbers, strings, booleans, lists/dicts, None, NaN/inf, missing
    if (typeof v === "number") return 0;
    if (typeof v === "string") return 1;
    if (typeof v === "boolean") return 2;
    if (v === null) return 4;
    if (nonfinite(v)) return 5;
    if (isMissing(v)) return 6;
    return 3;
  }

  function compareValues(a, b) {
    const ra = valueRank(a), rb = valueRank(b);
    if (ra !== rb) return ra - rb;
    if (ra === 0) return a - b;
    if (ra === 1) return collator.compare(a, b);
    if (ra === 2) return Number(a) - Number(b);
    return collator.compare(valueText(a), valueText(b));
  }

  // A key with two or more distinct numbers gets a numeric axis (log when its positive
  // values span two decades and none is negative; a 0 then sits at a labelled position to
  // the left), its other values (None, NaN, strings, ...) labelled positions to the right.
  // Any other key: one position per value, in compareValues order.
  function analyseKey(ki) {
    const distinct = new Map();
    rows.forEach((r) => {
      const v = r[4][ki], id = valueId(v);
      if (!distinct.has(id)) distinct.set(id, v);
    });
    const values = Array.from(distinct.values());
    const nums = values.filter((v) => typeof v === "number");
    const numeric = nums.length >= 2;
    const positive = nums.filter((v) => v > 0);
    const log = numeric && nums.every((v) => v >= 0) && positive.length >= 2 && spansDecades(positive);
    const zeros = log && nums.indexOf(0) >= 0;
    const others = values.filter((v) => !(numeric && typeof v === "number")).sort(compareValues);
    const index = new Map(others.map((v, i) => [valueId(v), i]));
    return { name: keys[ki].name, numeric: numeric, log: log, zeros: zeros, others: others,
      index: index, numbers: nums.length };
  }

  const keyInfo = keys.map((k, ki) => analyseKey(ki));

  function place(info, v) { // where a value sits: segment ("main", "left", "right") and x
    if (!info.numeric) return { seg: "main", x: info.index.get(valueId(v)) };
    if (typeof v === "number") return info.log && v === 0 ? { seg: "left", x: 0 } : { seg: "main", x: v };
    return { seg: "right", x: info.index.get(valueId(v)) };
  }

  // How much a metric varies with a key: the share of the variance of its means that the
  // key's values explain (epsilon squared, adjusted for the number of groups; numeric keys
  // with many values in quantile bins). -1: the key has one value among these experiments.
  function importance(mi, ki) {
    const info = keyInfo[ki], ylog = metricLog[mi];
    const pts = [];
    rows.forEach((r) => {
      const y = meanOf(r, mi);
      if (y === null || (ylog && !(y > 0))) return;
      pts.push([r[4][ki], ylog ? Math.log10(y) : y]);
    });
    let edges = null;
    if (info.numeric) {
      const nums = pts.map((p) => p[0]).filter((v) => typeof v === "number").sort((a, b) => a - b);
      const bins = Math.max(2, Math.min(10, Math.floor(nums.length / 3)));
      if (info.numbers > bins) edges = Array.from({ length: bins - 1 }, (_, i) => nums[Math.floor((i + 1) * nums.length / bins)]);
    }
    const groups = new Map();
    let sum = 0;
    pts.forEach((p) => {
      const g = edges && typeof p[0] === "number" ? "b" + edges.filter((e) => p[0] >= e).length : valueId(p[0]);
      const acc = groups.get(g) || { n: 0, sum: 0 };
      acc.n += 1; acc.sum += p[1];
      groups.set(g, acc);
      sum += p[1];
    });
    const n = pts.length;
    if (groups.size < 2) return -1;
    const mean = sum / n;
    let total = 0, between = 0;
    pts.forEach((p) => { total += (p[1] - mean) * (p[1] - mean); });
    groups.forEach((g) => { const d = g.sum / g.n - mean; between += g.n * d * d; });
    if (!(total > 0)) return 0;
    const within = Math.max(0, total - between);
    const df = n - groups.size;
    if (df <= 0) return 0; // one experiment per value: nothing to tell it by
    return Math.max(0, (between - (groups.size - 1) * within / df) / total);
  }

  const scores = metrics.map((m, mi) => keys.map((k, ki) => importance(mi, ki)));

  function keysFor(mi) { // keys with two values or more, the ones the metric varies with most first
    return keys.map((k, ki) => ki).filter((ki) => scores[mi][ki] >= 0)
      .sort((a, b) => scores[mi][b] - scores[mi][a] || a - b);
  }

  function keyOrder() { // every key, by importance for the ranking metric
    if (primary === null) return keys.map((k, ki) => ki);
    return keys.map((k, ki) => ki).sort((a, b) => scores[primary][b] - scores[primary][a] || a - b);
  }

  // ----------------------------------------------------------------------------------------
  // Overview, provenance, and whether the sweep is running.

  function addItem(dl, term, value) {
    dl.appendChild(el("dt", term));
    dl.appendChild(el("dd", value));
  }

  function counts(obj) {
    return Object.keys(obj).map((k) => obj[k] + " " + k).join(", ") || "none";
  }

  function renderRunning() {
    const notDone = rows.filter((r) => !isDone(r) && r[1] !== "failed").length;
    const held = rows.filter((r) => r[1] === "running").length;
    if (!data.running && !held) return;
    const banner = byId("running");
    banner.textContent = "This sweep is running: " + (data.running ? "it is being executed by " +
      data.running : held + " experiment(s) have a run a worker executes now") +
      ". The page shows what was on disk at " + data.generated + " (" + notDone +
      " experiment(s) not done yet); run dagrun report again for a newer one.";
    banner.hidden = false;
    document.title = "(running) " + document.title;
  }

  function renderOverview() {
    byId("out-path").textContent = data.out;
    const dl = byId("overview-list");
    addItem(dl, "out", data.out);
    addItem(dl, "report written", data.generated + (data.running ? " (while the sweep was running)" : ""));
    addItem(dl, "backend", data.backend);
    addItem(dl, "experiments", data.experiments + " (" + counts(data.experiment_states) + ")");
    addItem(dl, "runs", counts(data.run_states));
    const others = data.other_metrics || {};
    if (Object.keys(others).length) {
      addItem(dl, "metric values that are not numbers", Object.keys(others)
        .map((m) => m + " (" + others[m].join(", ") + ")").join("; ") + ": left out of the means and plots");
    }
    (data.older_code || []).forEach((o) => {
      addItem(dl, "computed with older code", o.ids.length + " experiment(s) (ids " +
        o.ids.slice(0, 20).join(", ") + (o.ids.length > 20 ? ", ..." : "") + ") with code " +
        o.code + (o.git ? " (" + o.git + ")" : "") + ", not the latest; --rerun-changed recomputes what changed");
    });
    addItem(dl, "compute time", seconds(data.compute_seconds) +
      " (sum of the stage times of every run; a timed-out run counts until its timeout)");
    const p = data.provenance;
    if (!p) {
      addItem(dl, "provenance", "not recorded (the sweep was last executed by an older dagrun)");
    } else {
      addItem(dl, "last executed", (p.time || "?") + " by " + (p.user || "?") + "@" + (p.host || "?"));
      const g = p.git;
      addItem(dl, "git", g ? g.commit + " (" + g.branch + ", " +
        (g.dirty === true ? "dirty: uncommitted changes" : g.dirty === false ? "clean"
          : "dirty: unknown, git status timed out") + ") in " + g.root : "not in a git repository");
      if (g && Array.isArray(g.untracked) && g.untracked.length) addItem(dl, "untracked code", g.untracked.join(", "));
      addItem(dl, "Python", (p.python || "?") + " " + (p.executable || ""));
      const pk = p.packages || {};
      addItem(dl, "packages", Object.keys(pk).map((k) => k + " " + pk[k]).join(", "));
      addItem(dl, "command", p.command || "");
      addItem(dl, "working folder", p.cwd || "");
      if (p.workflow) addItem(dl, "workflow", p.workflow);
      if (p.platform) addItem(dl, "platform", p.platform);
    }
    const cl = byId("constant-list");
    const names = Object.keys(data.constant);
    if (!names.length) cl.appendChild(el("dd", "none"));
    names.forEach((k) => addItem(cl, k, valueText(data.constant[k])));
  }

  // ----------------------------------------------------------------------------------------
  // Best configs: experiments whose repetitions are all done, ranked by one metric.

  function direction(mi) { return smaller[mi] ? "▼ smaller is better" : "▲ larger is better"; }

  function metricText(r, mi) {
    const text = plusMinus(meanOf(r, mi), stdOf(r, mi));
    const n = countOf(r, mi);
    return text && n < r[2] ? text + " (" + n + "/" + r[2] + ")" : text;
  }

  function configText(r) { // the keys its config has (a key only other models have is left out)
    return keyOrder().filter((ki) => !isMissing(r[4][ki]))
      .map((ki) => keys[ki].name + "=" + valueText(r[4][ki])).join(", ");
  }

  function ranked(mi) {
    const sign = smaller[mi] ? 1 : -1;
    return rows.filter((r) => isDone(r) && meanOf(r, mi) !== null)
      .sort((a, b) => sign * (meanOf(a, mi) - meanOf(b, mi)) || a[0] - b[0]);
  }

  function renderBest() {
    const list = byId("best-list"), note = byId("best-note");
    list.textContent = "";
    if (primary === null) { note.textContent = "No numeric metric yet."; return; }
    const done = ranked(primary);
    const others = rows.filter((r) => !isDone(r)).length;
    note.textContent = direction(primary) + "; ranked among the " + done.length +
      " experiment(s) whose repetitions are all done" +
      (others ? " (" + others + " not done are left out)" : "") +
      (data.primary_note ? ". " + data.primary_note : "");
    if (!done.length) { list.appendChild(el("li", "No experiment is done yet.", "note")); return; }
    done.slice(0, TOP).forEach((r) => {
      const li = el("li");
      li.dataset.id = String(r[0]);
      const head = el("div", null, "best-head");
      head.appendChild(el("span", metrics[primary].name + " " + metricText(r, primary), "best-value"));
      head.appendChild(el("span", " experiment " + r[0], "best-id"));
      li.appendChild(head);
      const cfg = el("div", configText(r), "best-config");
      cfg.title = cfg.textContent;
      li.appendChild(cfg);
      list.appendChild(li);
    });
  }

  // ----------------------------------------------------------------------------------------
  // The results table: ranked, sortable, filterable, paged; a column chooser for config keys.

  const table = { sort: null, page: 0, pageSize: 25, view: rows.slice(), shown: new Set() };

  function metricOrder() { // the ranking metric first, then the others as post returned them
    const all = metrics.map((m, mi) => mi);
    return primary === null ? all : [primary].concat(all.filter((mi) => mi !== primary));
  }

  function allColumns() {
    const cols = [{ id: "id", label: "experiment_id", num: true, value: (r) => r[0], text: (r) => String(r[0]) }];
    metricOrder().forEach((mi) => cols.push({ id: "m" + mi, label: metrics[mi].name, num: true, metric: mi,
      value: (r) => meanOf(r, mi), text: (r) => metricText(r, mi) }));
    cols.push({ id: "state", label: data.own.state, value: (r) => r[1], text: (r) => r[1], cls: "state" });
    cols.push({ id: "n", label: data.own.n, num: true, value: (r) => r[2], text: (r) => String(r[2]) });
    keyOrder().forEach((ki) => cols.push({ id: "k" + ki, label: keys[ki].name, key: ki, cls: "cfg",
      value: (r) => (isMissing(r[4][ki]) ? null : r[4][ki]), text: (r) => valueText(r[4][ki]) }));
    return cols;
  }

  let columns = [];
  function visibleColumns() {
    columns = allColumns().filter((c) => c.key === undefined || table.shown.has(c.key));
  }

  function bestValues() { // per metric among done experiments; null when all are the same
    return metrics.map((m, mi) => {
      let lo = Infinity, hi = -Infinity;
      rows.forEach((r) => {
        const v = meanOf(r, mi);
        if (!isDone(r) || v === null) return;
        lo = Math.min(lo, v); hi = Math.max(hi, v);
      });
      if (!(hi > lo)) return null;
      return smaller[mi] ? lo : hi;
    });
  }
  let best = bestValues();

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1; // no value: last, whatever the direction
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return compareValues(a, b);
  }

  const searchText = new Map();
  function rowText(r) {
    let t = searchText.get(r);
    if (t === undefined) {
      t = [String(r[0]), r[1]].concat(metrics.map((m, mi) => metricText(r, mi)),
        r[4].map(valueText)).join("\u0001").toLowerCase();
      searchText.set(r, t);
    }
    return t;
  }

  function rankBy(mi) { table.sort = { id: "m" + mi, desc: !smaller[mi], rank: true }; }

  function updateView() {
    const needle = byId("filter").value.trim().toLowerCase();
    const state = byId("state-filter").value;
    let view = rows.filter((r) => (!state || r[1] === state) && (!needle || rowText(r).includes(needle)));
    const sort = table.sort;
    const col = sort && allColumns().find((c) => c.id === sort.id);
    if (col) {
      const sign = sort.desc ? -1 : 1;
      view = view.map((r, i) => [r, i]).sort((x, y) => {
        if (sort.rank && isDone(x[0]) !== isDone(y[0])) return isDone(x[0]) ? -1 : 1;
        const a = col.value(x[0]), b = col.value(y[0]);
        if (a === null || a === undefined || b === null || b === undefined) return compare(a, b) || x[1] - y[1];
        return sign * compare(a, b) || x[1] - y[1];
      }).map((p) => p[0]);
    }
    table.view = view;
    table.page = 0;
    renderBody();
  }

  function directionButton(mi) {
    const b = el("button", direction(mi), "direction");
    b.type = "button";
    b.title = "which value is best; click to flip";
    b.addEventListener("click", (ev) => {
      ev.stopPropagation();
      smaller[mi] = !smaller[mi];
      best = bestValues();
      if (table.sort && table.sort.id === "m" + mi) table.sort.desc = !table.sort.desc;
      renderBest();
      renderHead();
      updateView();
    });
    return b;
  }

  function renderHead() {
    visibleColumns();
    const thead = byId("results-table").tHead;
    thead.textContent = "";
    const tr = document.createElement("tr");
    columns.forEach((c) => {
      const th = el("th");
      th.appendChild(el("span", c.label, "label"));
      th.dataset.col = c.id;
      if (c.metric !== undefined) th.classList.add("metric");
      if (c.key !== undefined) { th.classList.add("cfg"); th.title = c.label; }
      if (table.sort && table.sort.id === c.id) th.classList.add(table.sort.desc ? "sorted-desc" : "sorted-asc");
      th.addEventListener("click", () => {
        const same = table.sort && table.sort.id === c.id;
        table.sort = { id: c.id, desc: same ? !table.sort.desc : false, rank: false };
        renderHead();
        updateView();
      });
      if (c.metric !== undefined) th.appendChild(directionButton(c.metric));
      tr.appendChild(th);
    });
    thead.appendChild(tr);
  }

  function cell(c, r) {
    const td = el("td", c.text(r), c.cls || (c.num ? "num" : ""));
    if (c.key !== undefined) td.title = td.textContent;
    if (c.metric !== undefined) {
      const mi = c.metric;
      if (countOf(r, mi) < r[2] && meanOf(r, mi) !== null) {
        td.title = countOf(r, mi) + " of the " + r[2] + " repetitions done gave a finite value";
      }
      if (isDone(r) && best[mi] !== null && meanOf(r, mi) === best[mi]) {
        td.classList.add("best");
        td.title = "best " + metrics[mi].name + " (" + (smaller[mi] ? "smallest" : "largest") + ")";
      }
    }
    return td;
  }

  function renderBody() {
    const tbody = byId("results-table").tBodies[0];
    const size = table.pageSize || table.view.length || 1;
    const pages = Math.max(1, Math.ceil(table.view.length / size));
    table.page = Math.min(table.page, pages - 1);
    const start = table.page * size;
    const shown = table.view.slice(start, start + size);
    const frag = document.createDocumentFragment();
    shown.forEach((r) => {
      const tr = document.createElement("tr");
      tr.className = "state-" + r[1];
      tr.dataset.id = String(r[0]);
      columns.forEach((c) => tr.appendChild(cell(c, r)));
      frag.appendChild(tr);
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    const total = rows.length, n = table.view.length;
    byId("row-count").textContent = (n ? start + 1 : 0) + "–" + (start + shown.length) + " of " + n +
      (n < total ? " (filtered from " + total + ")" : "") + ", page " + (table.page + 1) + "/" + pages;
  }

  function renderChooser() {
    const list = byId("column-list");
    list.textContent = "";
    keyOrder().forEach((ki) => {
      const label = el("label");
      const box = el("input");
      box.type = "checkbox";
      box.checked = table.shown.has(ki);
      box.dataset.key = String(ki);
      box.addEventListener("change", () => {
        if (box.checked) table.shown.add(ki); else table.shown.delete(ki);
        columnsChanged();
      });
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + keys[ki].name));
      list.appendChild(label);
    });
  }

  function columnsChanged() {
    byId("column-summary").textContent = "config columns (" + table.shown.size + " of " + keys.length + ")";
    renderHead();
    renderBody();
  }

  function setupTable() {
    keyOrder().slice(0, KEY_COLUMNS).forEach((ki) => table.shown.add(ki));
    if (primary !== null) rankBy(primary);
    const states = byId("state-filter");
    Array.from(new Set(["done", "failed", "incomplete"].concat(rows.map((r) => r[1])))).forEach((s) => {
      const o = el("option", s);
      o.value = s;
      states.appendChild(o);
    });
    renderChooser();
    columnsChanged();
    byId("filter").addEventListener("input", updateView);
    states.addEventListener("change", updateView);
    byId("page-size").addEventListener("change", (ev) => {
      table.pageSize = Number(ev.target.value);
      renderBody();
    });
    byId("prev-page").addEventListener("click", () => { table.page = Math.max(0, table.page - 1); renderBody(); });
    byId("next-page").addEventListener("click", () => { table.page += 1; renderBody(); });
    byId("columns-all").addEventListener("click", () => { keys.forEach((k, ki) => table.shown.add(ki)); renderChooser(); columnsChanged(); });
    byId("columns-none").addEventListener("click", () => { table.shown.clear(); renderChooser(); columnsChanged(); });
    updateView();
  }

  function setupRanking() {
    const select = byId("rank-metric");
    metrics.forEach((m, mi) => {
      const o = el("option", m.name);
      o.value = String(mi);
      select.appendChild(o);
    });
    if (primary !== null) select.value = String(primary);
    select.addEventListener("change", () => {
      primary = Number(select.value);
      rankBy(primary);
      renderBest();
      renderChooser();
      columnsChanged();
      updateView();
    });
  }

  // ----------------------------------------------------------------------------------------
  // The tooltip: an experiment's config, as text.

  const tooltip = byId("tooltip");
  const TOOLTIP_KEYS = 24;

  function showTooltip(lines, event) {
    tooltip.textContent = "";
    lines.forEach((line) => tooltip.appendChild(el("div", line)));
    tooltip.hidden = false;
    const x = event && event.clientX !== undefined ? event.clientX : 20;
    const y = event && event.clientY !== undefined ? event.clientY : 20;
    tooltip.style.left = Math.max(4, Math.min(x + 14, window.innerWidth - tooltip.offsetWidth - 8)) + "px";
    tooltip.style.top = Math.max(4, Math.min(y + 14, window.innerHeight - tooltip.offsetHeight - 8)) + "px";
  }

  function experimentLines(r, mi) {
    const lines = ["experiment " + r[0] + " (" + r[1] + ", " + r[2] + " of " + r[3] + " repetitions done)",
      metrics[mi].name + ": " + metricText(r, mi)];
    const vals = valuesOf(r, mi);
    if (vals.length > 1) lines.push("repetitions: " + vals.map((v) => (v === null ? "—" : fmtNum(v))).join(", "));
    const order = keyOrder();
    order.slice(0, TOOLTIP_KEYS).forEach((ki) =>
      lines.push(keys[ki].name + " = " + (isMissing(r[4][ki]) ? "(missing)" : shorten(valueText(r[4][ki]), 120))));
    if (order.length > TOOLTIP_KEYS) lines.push("(+ " + (order.length - TOOLTIP_KEYS) + " more keys: see the table)");
    if (Object.keys(data.constant).length) lines.push("(+ the constant keys listed above)");
    return lines;
  }

  // ----------------------------------------------------------------------------------------
  // Plots: each metric against the keys it varies with most.

  const colorBy = { key: null }; // null: by state

  function axisRange(lo, hi, log) {
    if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    const pad = (hi - lo) * 0.05 || 0.5;
    return [lo - pad, hi + pad];
  }

  function positionsAxis(labels, domain, title) { // an axis of labelled positions 0..n-1
    const step = Math.max(1, Math.ceil(labels.length / 30));
    const ticks = labels.map((l, i) => i).filter((i) => i % step === 0);
    return { type: "linear", domain: domain, range: [-0.6, labels.length - 0.4], tickmode: "array",
      tickvals: ticks, ticktext: ticks.map((i) => axisText(labels[i])), showgrid: false,
      zeroline: false, anchor: "y", title: { text: title ? plotlyText(title) : "" }, automargin: true };
  }

  function layoutFor(info, segs, ylog, yrange, metricName) {
    const chars = info.others.reduce((n, v) => n + Math.min(LABEL_MAX, categoryName(v).length) + 3, 0);
    const wl = segs.left ? 0.06 : 0;
    const wr = segs.right ? Math.min(0.45, 0.04 + 0.013 * chars) : 0; // about 7 px a character
    const main = [wl ? wl + 0.03 : 0, wr ? 1 - wr - 0.03 : 1];
    const layout = {
      margin: { l: 60, r: 16, t: 30, b: 48 }, height: 320, hovermode: "closest",
      showlegend: true, legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 },
        traceorder: "normal" },
      yaxis: { title: { text: plotlyText(shorten(metricName, 60)) }, type: ylog ? "log" : "linear",
        automargin: true, anchor: "free", position: 0, exponentformat: "e" },
    };
    if (yrange) layout.yaxis.range = yrange;
    if (ylog) layout.yaxis.dtick = 1; // a label per decade
    if (info.numeric) {
      layout.xaxis = { type: info.log ? "log" : "linear", domain: main, anchor: "y", automargin: true,
        exponentformat: "e", zeroline: false, title: { text: plotlyText(shorten(info.name, 60)) } };
      if (info.log) layout.xaxis.dtick = 1; // a label per decade
    } else {
      layout.xaxis = positionsAxis(info.others.map(categoryName), main, shorten(info.name, 60));
    }
    if (segs.right) layout.xaxis2 = positionsAxis(info.others.map(categoryName), [1 - wr, 1], "");
    if (segs.left) layout.xaxis3 = positionsAxis(["0"], [0, wl], "");
    return layout;
  }

  const SEG_AXIS = { main: "x", right: "x2", left: "x3" };

  function jitter(i) { return ((i * 2654435761) % 1000) / 1000 - 0.5; } // deterministic, in [-0.5, 0.5)

  function shift(info, seg, x, amount) { // move x by a share of a position or of the axis
    if (seg !== "main" || !info.numeric) return x + amount;
    if (info.log) return x * Math.pow(10, amount * info.span);
    return x + amount * info.span;
  }

  function colorGroups(pts) { // [label, color, [row indices]] by state or by the colour key
    if (colorBy.key === null) {
      const byState = new Map();
      pts.forEach((ri) => {
        const state = rows[ri][1];
        if (!byState.has(state)) byState.set(state, []);
        byState.get(state).push(ri);
      });
      const rank = (s) => { const i = STATE_ORDER.indexOf(s); return i < 0 ? STATE_ORDER.length : i; };
      return Array.from(byState.keys()).sort((a, b) => rank(a) - rank(b) || collator.compare(a, b))
        .map((state, i) => [state, stateColor(state, i), byState.get(state)]);
    }
    const ki = colorBy.key, info = keyInfo[ki];
    if (info.numeric && info.numbers > PALETTE.length) return null; // a colour scale instead
    const order = Array.from(new Map(pts.map((ri) => [valueId(rows[ri][4][ki]), rows[ri][4][ki]])).values())
      .sort(compareValues);
    const where = new Map(order.map((v, i) => [valueId(v), i]));
    const out = order.map((v, i) => [keys[ki].name + "=" + shorten(categoryName(v), LABEL_MAX),
      PALETTE[i % PALETTE.length], []]);
    if (out.length > PALETTE.length) { out.length = PALETTE.length - 1; out.push(["other values", "#999", []]); }
    pts.forEach((ri) => out[Math.min(where.get(valueId(rows[ri][4][ki])), out.length - 1)][2].push(ri));
    return out;
  }

  function colorValue(v) { // on the colour scale of the colour key: log10 for a log key
    const info = keyInfo[colorBy.key];
    if (typeof v !== "number" || (info.log && !(v > 0))) return null;
    return info.log ? Math.log10(v) : v;
  }

  function errorBars(ys, ss, ylog, yrange) {
    const plus = ss.map((s) => s || 0);
    const minus = ys.map((y, i) => {
      const s = plus[i];
      if (!ylog || y - s > 0) return s;
      return Math.max(0, y - Math.pow(10, yrange[0])); // down to the axis: the bar would reach 0 or below
    });
    return { type: "data", symmetric: false, array: plus, arrayminus: minus, visible: !data.single,
      thickness: 1, width: 3 };
  }

  function sparseTraces(mi, ki, pts, ylog, yrange, hover) {
    const info = keyInfo[ki];
    const traces = [];
    const hasReps = pts.some((ri) => valuesOf(rows[ri], mi).length > 1);
    const xOf = (ri, seg, x, side) => {
      const j = jitter(ri) * (seg === "main" && info.numeric ? 0.012 : 0.16);
      return shift(info, seg, x, j + (hasReps ? side * (seg === "main" && info.numeric ? 0.008 : 0.12) : 0));
    };
    const groups = colorGroups(pts);
    const scale = groups === null;
    (groups || [["experiments", null, pts]]).forEach((g, gi) => {
      ["left", "main", "right"].forEach((seg) => {
        const xs = [], ys = [], ss = [], idx = [], cs = [];
        g[2].forEach((ri) => {
          const p = place(info, rows[ri][4][ki]);
          if (p.seg !== seg) return;
          xs.push(xOf(ri, seg, p.x, -1)); ys.push(meanOf(rows[ri], mi)); ss.push(stdOf(rows[ri], mi)); idx.push(ri);
          if (scale) cs.push(colorValue(rows[ri][4][colorBy.key]));
        });
        if (!xs.length) return;
        const color = scale ? "#2f6db5" : g[1];
        const marker = { size: 8, color: scale ? cs : color, opacity: 0.9, line: { width: 0.5, color: "#fff" } };
        if (scale) {
          marker.colorscale = "Viridis";
          marker.showscale = seg === "main";
          marker.colorbar = { title: { text: axisText((keyInfo[colorBy.key].log ? "log10 " : "") +
            keys[colorBy.key].name) }, thickness: 10 };
        }
        const err = errorBars(ys, ss, ylog, yrange);
        err.color = scale ? "rgba(60,60,60,0.45)" : color;
        traces.push({ type: "scatter", mode: "markers", x: xs, y: ys, xaxis: SEG_AXIS[seg], yaxis: "y",
          name: plotlyText(g[0]), legendgroup: "g" + gi, showlegend: !traces.some((t) => t.legendgroup === "g" + gi),
          marker: marker, error_y: err, hoverinfo: "none" });
        hover.push((i, ev) => showTooltip(experimentLines(rows[idx[i]], mi), ev));
      });
    });
    if (hasReps) {
      ["left", "main", "right"].forEach((seg) => {
        const xs = [], ys = [], who = [];
        pts.forEach((ri) => {
          const p = place(info, rows[ri][4][ki]);
          if (p.seg !== seg) return;
          valuesOf(rows[ri], mi).forEach((v, rep) => {
            if (v === null || (ylog && !(v > 0))) return;
            xs.push(xOf(ri, seg, p.x, 1)); ys.push(v); who.push([ri, rep]);
          });
        });
        if (!xs.length) return;
        traces.push({ type: "scatter", mode: "markers", x: xs, y: ys, xaxis: SEG_AXIS[seg], yaxis: "y",
          name: "repetitions", legendgroup: "reps", showlegend: !traces.some((t) => t.legendgroup === "reps"),
          marker: { size: 5, color: "rgba(80,80,80,0.6)", symbol: "circle-open" }, hoverinfo: "none" });
        hover.push((i, ev) => {
          const r = rows[who[i][0]];
          showTooltip(["experiment " + r[0] + ", repetition " + who[i][1], metrics[mi].name + ": " + fmtNum(ys[i])], ev);
        });
      });
    }
    return traces;
  }

  function quantile(sorted, q) {
    const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }

  function bins(info, pairs) { // numeric x: one bin per value when few, else equal bins on the axis
    const xs = Array.from(new Set(pairs.map((p) => p[0]))).sort((a, b) => a - b);
    const toAxis = (x) => (info.log ? Math.log10(x) : x);
    const fromAxis = (a) => (info.log ? Math.pow(10, a) : a);
    const groups = new Map();
    if (xs.length <= BINS) {
      pairs.forEach((p) => { if (!groups.has(p[0])) groups.set(p[0], { x: p[0], lo: p[0], hi: p[0], ys: [] }); groups.get(p[0]).ys.push(p[1]); });
    } else {
      const a0 = toAxis(xs[0]), width = (toAxis(xs[xs.length - 1]) - a0) / BINS;
      pairs.forEach((p) => {
        const b = Math.min(BINS - 1, Math.floor((toAxis(p[0]) - a0) / width));
        if (!groups.has(b)) groups.set(b, { x: fromAxis(a0 + (b + 0.5) * width), lo: fromAxis(a0 + b * width), hi: fromAxis(a0 + (b + 1) * width), ys: [] });
        groups.get(b).ys.push(p[1]);
      });
    }
    return Array.from(groups.values()).sort((a, b) => a.x - b.x).map((g) => {
      const ys = g.ys.sort((a, b) => a - b);
      return { x: g.x, lo: g.lo, hi: g.hi, n: ys.length, median: quantile(ys, 0.5),
        q10: quantile(ys, 0.1), q25: quantile(ys, 0.25), q75: quantile(ys, 0.75), q90: quantile(ys, 0.9) };
    });
  }

  function denseTraces(mi, ki, pts, hover) {
    const info = keyInfo[ki];
    const traces = [];
    const bySeg = { left: [], main: [], right: [] };
    pts.forEach((ri) => { const p = place(info, rows[ri][4][ki]); bySeg[p.seg].push([p.x, meanOf(rows[ri], mi), ri]); });
    ["left", "main", "right"].forEach((seg) => {
      const pairs = bySeg[seg];
      if (!pairs.length) return;
      if (seg === "main" && info.numeric) {
        const bs = bins(info, pairs);
        const band = (lo, hi, name, alpha) => {
          traces.push({ type: "scatter", mode: "lines", x: bs.map((b) => b.x), y: bs.map((b) => b[lo]), xaxis: "x", yaxis: "y",
            line: { width: 0, color: "#2f6db5" }, showlegend: false, hoverinfo: "none" });
          hover.push(null);
          traces.push({ type: "scatter", mode: "lines", x: bs.map((b) => b.x), y: bs.map((b) => b[hi]), xaxis: "x", yaxis: "y",
            line: { width: 0, color: "#2f6db5" }, fill: "tonexty", fillcolor: "rgba(47,109,181," + alpha + ")", name: name, hoverinfo: "none" });
          hover.push(null);
        };
        band("q10", "q90", "10–90 %", 0.12);
        band("q25", "q75", "25–75 %", 0.25);
        traces.push({ type: "scatter", mode: "lines+markers", x: bs.map((b) => b.x), y: bs.map((b) => b.median), xaxis: "x", yaxis: "y",
          name: "median", line: { color: "#1f3349", width: 2 }, marker: { size: 5, color: "#1f3349" }, hoverinfo: "none" });
        hover.push((i, ev) => {
          const b = bs[i];
          showTooltip([info.name + (b.lo === b.hi ? " = " + fmtNum(b.x) : " in [" + fmtNum(b.lo) + ", " + fmtNum(b.hi) + "]"),
            b.n + " experiment(s); " + metrics[mi].name + " median " + fmtNum(b.median),
            "25–75 %: " + fmtNum(b.q25) + " – " + fmtNum(b.q75), "10–90 %: " + fmtNum(b.q10) + " – " + fmtNum(b.q90)], ev);
        });
      } else {
        traces.push({ type: "box", x: pairs.map((p) => p[0]), y: pairs.map((p) => p[1]), xaxis: SEG_AXIS[seg], yaxis: "y",
          name: "experiments", legendgroup: "box", showlegend: !traces.some((t) => t.legendgroup === "box"),
          marker: { color: "#2f6db5", size: 3 }, line: { color: "#2f6db5", width: 1 },
          boxpoints: pairs.length > 5000 ? false : "outliers", width: 0.5, hoverinfo: "y" });
        hover.push(null);
      }
    });
    const top = best[mi] === null ? null : ranked(mi)[0]; // no star when every value is the same
    if (top) {
      const p = place(info, top[4][ki]);
      traces.push({ type: "scatter", mode: "markers", x: [p.x], y: [meanOf(top, mi)], xaxis: SEG_AXIS[p.seg], yaxis: "y",
        name: "best", marker: { symbol: "star", size: 13, color: "#f2b705", line: { width: 1, color: "#7a5c00" } }, hoverinfo: "none" });
      hover.push((i, ev) => showTooltip(experimentLines(top, mi), ev));
    }
    return traces;
  }

  function yRangeFor(mi, pts, ylog) { // log axes: from the lowest positive value drawn
    if (!ylog) return null;
    let lo = Infinity, hi = -Infinity;
    pts.forEach((ri) => {
      const r = rows[ri], y = meanOf(r, mi), s = data.single ? 0 : stdOf(r, mi) || 0;
      lo = Math.min(lo, y - s > 0 ? y - s : y); hi = Math.max(hi, y + s);
      valuesOf(r, mi).forEach((v) => { if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    return lo > 0 && hi >= lo ? axisRange(lo, hi, true) : null;
  }

  function plotSpec(mi, ki) {
    const info = keyInfo[ki], ylog = metricLog[mi];
    const pts = [];
    rows.forEach((r, ri) => {
      const y = meanOf(r, mi);
      if (y !== null && (!ylog || y > 0)) pts.push(ri);
    });
    if (info.numeric) {
      const nums = pts.map((ri) => rows[ri][4][ki]).filter((v) => typeof v === "number" && !(info.log && v <= 0));
      let lo = Infinity, hi = -Infinity;
      nums.forEach((v) => { lo = Math.min(lo, v); hi = Math.max(hi, v); });
      info.span = info.log ? Math.log10(hi / lo) || 1 : (hi - lo) || 1;
    }
    const segs = {};
    pts.forEach((ri) => { segs[place(info, rows[ri][4][ki]).seg] = true; });
    const dense = pts.length > DENSE;
    const yrange = dense ? null : yRangeFor(mi, pts, ylog);
    const hover = [];
    const traces = dense ? denseTraces(mi, ki, pts, hover) : sparseTraces(mi, ki, pts, ylog, yrange, hover);
    return { traces: traces, layout: layoutFor(info, segs, ylog, yrange, metrics[mi].name), hover: hover,
      points: pts.length, dense: dense };
  }

  const queue = [];
  let pumping = false;

  function pump() {
    const next = queue.shift();
    if (!next) {
      pumping = false;
      document.body.dataset.plots = "drawn";
      document.body.dataset.drawnAt = String(Math.round(performance.now()));
      return;
    }
    let drawn;
    try { drawn = next(); } catch (err) { drawn = Promise.reject(err); }
    drawn.then(() => setTimeout(pump, 0), (err) => { setTimeout(pump, 0); throw err; });
  }

  function enqueue(job) {
    queue.push(job);
    document.body.dataset.plots = "drawing";
    if (!pumping) { pumping = true; setTimeout(pump, 0); }
  }

  function attachHover(div) {
    if (div.dataset.hover) return;
    div.dataset.hover = "true";
    div.on("plotly_hover", (ev) => {
      const p = ev.points && ev.points[0];
      const fn = p && div._dagrunHover && div._dagrunHover[p.curveNumber];
      if (fn) fn(p.pointNumber, ev.event);
    });
    div.on("plotly_unhover", () => { tooltip.hidden = true; });
  }

  function drawPlot(div) {
    const spec = plotSpec(Number(div.dataset.metric), Number(div.dataset.key));
    div.dataset.points = String(spec.points);
    div.dataset.mode = spec.dense ? "dense" : "points";
    div._dagrunHover = spec.hover;
    return Plotly.react(div, spec.traces, spec.layout, { displaylogo: false, responsive: true }).then(() => {
      attachHover(div);
      div.dataset.rendered = "true";
    });
  }

  function addPlot(grid, mi, ki) {
    const box = el("div", null, "plot-box");
    const title = el("div", null, "plot-title");
    title.appendChild(el("span", metrics[mi].name + " vs " + keys[ki].name));
    title.appendChild(el("span", " " + Math.round(100 * scores[mi][ki]) + " % of its variance", "plot-score"));
    box.appendChild(title);
    const div = el("div", null, "plot");
    div.dataset.metric = String(mi);
    div.dataset.key = String(ki);
    div.dataset.title = metrics[mi].name + " vs " + keys[ki].name;
    box.appendChild(div);
    grid.appendChild(box);
    enqueue(() => drawPlot(div));
  }

  function moreKeys(grid, mi, rest) {
    const select = el("select", null, "more-keys");
    select.setAttribute("aria-label", "plot " + metrics[mi].name + " against another key");
    const head = el("option", "plot against another key (" + rest.length + " more)");
    head.value = "";
    select.appendChild(head);
    rest.forEach((ki) => {
      const o = el("option", keys[ki].name + " (" + Math.round(100 * scores[mi][ki]) + " %)");
      o.value = String(ki);
      select.appendChild(o);
    });
    select.addEventListener("change", () => {
      if (select.value === "") return;
      const ki = Number(select.value);
      select.remove(select.selectedIndex);
      select.value = "";
      addPlot(grid, mi, ki);
    });
    return select;
  }

  function renderPlots() {
    const groups = byId("plot-groups");
    if (!metrics.length || !keys.length) {
      groups.appendChild(el("p", metrics.length ? "No config key varies: nothing to plot against."
        : "No numeric metric yet.", "note"));
      return;
    }
    metricOrder().forEach((mi) => {
      const block = el("div", null, "metric-plots");
      block.dataset.metric = String(mi);
      const head = el("h3", metrics[mi].name);
      head.appendChild(el("span", " " + direction(mi), "note"));
      block.appendChild(head);
      const ranked = keysFor(mi);
      const grid = el("div", null, "plot-grid");
      if (!ranked.length) block.appendChild(el("p", "No key takes two values among the experiments with this metric.", "note"));
      block.appendChild(grid);
      ranked.slice(0, PLOTS_PER_METRIC).forEach((ki) => addPlot(grid, mi, ki));
      if (ranked.length > PLOTS_PER_METRIC) block.appendChild(moreKeys(grid, mi, ranked.slice(PLOTS_PER_METRIC)));
      groups.appendChild(block);
    });
  }

  function setupColorBy() {
    const select = byId("color-by");
    const first = el("option", "state");
    first.value = "";
    select.appendChild(first);
    keyOrder().forEach((ki) => {
      const o = el("option", keys[ki].name);
      o.value = String(ki);
      select.appendChild(o);
    });
    select.addEventListener("change", () => {
      colorBy.key = select.value === "" ? null : Number(select.value);
      document.querySelectorAll(".plot[data-metric][data-rendered]").forEach((div) => enqueue(() => drawPlot(div)));
      if (byId("parcoords").dataset.rendered) enqueue(drawParallel);
    });
  }

  // ----------------------------------------------------------------------------------------
  // Parallel coordinates over the keys the ranking metric varies with most.

  function parallelDimension(ki, pts) {
    const info = keyInfo[ki];
    const label = axisText(info.name);
    const vals = pts.map((ri) => rows[ri][4][ki]);
    if (info.numeric && !info.others.length) {
      if (!info.log || info.zeros) return { label: label, values: vals };
      const lo = Math.floor(Math.log10(Math.min(...vals))), hi = Math.ceil(Math.log10(Math.max(...vals)));
      const ticks = Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
      return { label: label, values: vals.map((v) => Math.log10(v)), tickvals: ticks,
        ticktext: ticks.map((t) => plotlyText("1e" + t)) };
    }
    const order = Array.from(new Map(vals.map((v) => [valueId(v), v])).values()).sort(compareValues);
    const index = new Map(order.map((v, i) => [valueId(v), i]));
    const step = Math.max(1, Math.ceil(order.length / 25));
    const ticks = order.map((v, i) => i).filter((i) => i % step === 0);
    return { label: label, values: vals.map((v) => index.get(valueId(v))), tickvals: ticks,
      ticktext: ticks.map((i) => axisText(categoryName(order[i]))) };
  }

  function drawParallel() {
    const div = byId("parcoords");
    const mi = primary;
    const pts = rows.map((r, ri) => ri).filter((ri) => meanOf(rows[ri], mi) !== null);
    const dims = keysFor(mi).slice(0, PARALLEL_KEYS).map((ki) => parallelDimension(ki, pts));
    const ys = pts.map((ri) => meanOf(rows[ri], mi));
    dims.push({ label: axisText(metrics[mi].name), values: ys });
    let color = ys, title = metrics[mi].name;
    if (colorBy.key !== null) {
      const dim = parallelDimension(colorBy.key, pts);
      color = dim.values.map((v) => (typeof v === "number" ? v : 0));
      title = keys[colorBy.key].name;
    }
    const trace = { type: "parcoords", dimensions: dims,
      line: { color: color, colorscale: "Viridis", reversescale: colorBy.key === null && smaller[mi], showscale: true,
        colorbar: { title: { text: axisText(title) }, thickness: 10 } } };
    return Plotly.react(div, [trace], { margin: { l: 70, r: 40, t: 50, b: 20 }, height: 420 },
      { displaylogo: false, responsive: true }).then(() => { div.dataset.rendered = "true"; });
  }

  function renderParallel() {
    const div = byId("parcoords");
    if (primary === null || !keysFor(primary).length) {
      div.replaceWith(el("p", "Nothing to draw: no metric, or no key takes two values.", "note"));
      return;
    }
    enqueue(drawParallel);
  }

  // ----------------------------------------------------------------------------------------
  // Failures by kind, and time.

  function simpleTable(headers, body, classes) {
    const t = document.createElement("table");
    const tr = document.createElement("tr");
    headers.forEach((h) => tr.appendChild(el("th", h)));
    t.createTHead().appendChild(tr);
    const tb = t.createTBody();
    body.forEach((cells) => {
      const row = document.createElement("tr");
      cells.forEach((c, i) => row.appendChild(el("td", c, classes[i] || "")));
      tb.appendChild(row);
    });
    return t;
  }

  function renderFailures() {
    const box = byId("failure-list");
    const kinds = Object.keys(data.failure_kinds).sort((a, b) => data.failure_kinds[b] - data.failure_kinds[a]);
    if (!kinds.length) { box.appendChild(el("p", "No run has failed.", "note")); return; }
    kinds.forEach((kind) => {
      const h = el("h3", null);
      h.appendChild(el("span", kind, "kind"));
      h.appendChild(document.createTextNode(" " + data.failure_kinds[kind] + " run(s)"));
      box.appendChild(h);
      const listed = data.failures.filter((f) => f.kind === kind);
      const t = simpleTable(["run", "stage", "attempt", "first error line", "run folder"],
        listed.map((f) => [f.run, f.stage, String(f.attempt), f.message, f.path]),
        ["", "", "num", "message", "path"]);
      t.className = "failures";
      t.dataset.kind = kind;
      box.appendChild(el("div", null, "table-wrap")).appendChild(t);
      if (listed.length < data.failure_kinds[kind]) {
        box.appendChild(el("p", "(" + (data.failure_kinds[kind] - listed.length) + " more not listed; see dagrun status)", "note"));
      }
    });
  }

  function renderTime() {
    const div = byId("duration-plot");
    const stages = Object.keys(data.durations);
    const all = [].concat(...stages.map((s) => data.durations[s])).filter((v) => v > 0);
    if (!all.length) { div.replaceWith(el("p", "No stage has finished yet.", "note")); }
    else {
      const traces = stages.map((s) => ({ type: "box", name: plotlyText(s), y: data.durations[s], hoverinfo: "y",
        boxpoints: data.durations[s].length > 2000 ? false : "outliers" }));
      enqueue(() => Plotly.newPlot(div, traces, { margin: { l: 60, r: 16, t: 16, b: 40 }, height: 360, showlegend: false,
        yaxis: { title: { text: "seconds" }, type: spansDecades(all) ? "log" : "linear" } },
      { displaylogo: false, responsive: true }).then(() => { div.dataset.rendered = "true"; }));
    }
    const body = data.slowest.map((s) => [s.run, s.state || "", seconds(s.total)].concat(s.stages.map(seconds), [s.path]));
    const t = simpleTable(["run", "state", "total", "pre", "fit", "post", "run folder"], body,
      ["", "", "num", "num", "num", "num", "path"]);
    const old = byId("slowest-table");
    t.id = "slowest-table";
    old.replaceWith(t);
  }

  // ----------------------------------------------------------------------------------------
  // An adaptive search: the optimisation history and the parameter importances.

  function renderSearch() {
    const s = data.search;
    if (!s) { byId("search").remove(); byId("search-link").remove(); return; }
    byId("search").hidden = false;
    byId("search-link").hidden = false;
    const complete = s.trials.filter((t) => t[1] === "complete").length;
    byId("search-note").textContent = s.trials.length + " trial(s) asked, " + complete +
      " complete; objective: the mean of " + s.metric + ", to " + s.direction + ".";
    const hover = (t) => plotlyText("trial " + t[0] + " (" + t[1] + "): " + fmtNum(t[2]));
    const shown = s.trials.filter((t) => t[2] !== null && (t[1] === "complete" || t[1] === "pruned"));
    const div = byId("history-plot");
    if (!shown.length) div.replaceWith(el("p", "No trial has a value yet.", "note"));
    else {
      const traces = ["complete", "pruned"].map((state) => {
        const pts = shown.filter((t) => t[1] === state);
        return { type: "scatter", mode: "markers", name: state, x: pts.map((t) => t[0]),
          y: pts.map((t) => t[2]), text: pts.map(hover), hoverinfo: "text",
          marker: { color: STATE_COLORS[state === "complete" ? "done" : state], size: 7 } };
      }).filter((t) => t.x.length);
      const best = s.trials.filter((t) => t[3] !== null);
      traces.push({ type: "scatter", mode: "lines", line: { shape: "hv", color: "#c0392b" },
        name: "best so far", x: best.map((t) => t[0]), y: best.map((t) => t[3]), hoverinfo: "y" });
      const ys = shown.map((t) => t[2]);
      enqueue(() => Plotly.newPlot(div, traces, { margin: { l: 70, r: 16, t: 16, b: 44 }, height: 360,
        xaxis: { title: { text: "trial" } },
        yaxis: { title: { text: axisText(s.metric) }, type: spansDecades(ys) && ys.every((v) => v > 0) ? "log" : "linear" } },
      { displaylogo: false, responsive: true }).then(() => { div.dataset.rendered = "true"; }));
    }
    const imp = byId("importances-plot");
    if (!s.importances) {
      byId("importances-note").textContent = s.importances_note || "Parameter importances are missing.";
      imp.remove();
      return;
    }
    byId("importances-note").textContent = "Share of the objective's variance each parameter explains, by " +
      s.evaluator + ", over the complete trials.";
    const rows = s.importances.slice().reverse();
    enqueue(() => Plotly.newPlot(imp, [{ type: "bar", orientation: "h", x: rows.map((r) => r[1]),
      y: rows.map((r) => axisText(r[0])), text: rows.map((r) => plotlyText(r[0])), textposition: "none", hoverinfo: "text+x",
      marker: { color: "#2f6db5" } }], { margin: { l: 160, r: 16, t: 16, b: 40 },
      height: Math.max(200, 40 + 28 * rows.length), xaxis: { title: { text: "importance" }, rangemode: "tozero" } },
    { displaylogo: false, responsive: true }).then(() => { imp.dataset.rendered = "true"; }));
  }

  renderRunning();
  renderOverview();
  renderSearch();
  setupRanking();
  renderBest();
  setupTable();
  setupColorBy();
  renderPlots();
  renderParallel();
  renderFailures();
  renderTime();
  document.body.dataset.ready = "true";
  document.body.dataset.readyAt = String(Math.round(performance.now())); // ms since navigation
})();
