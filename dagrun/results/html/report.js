// The dagrun report page: builds every section from the JSON in #dagrun-data.
// Everything shown comes from user data, so text is only ever set with textContent, and
// strings handed to Plotly (which reads a few HTML tags in labels) are entity-escaped.
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("dagrun-data").textContent);
  const byId = (id) => document.getElementById(id);
  const LAZY_POINTS = 40000; // above this many points in all plots, draw them when scrolled to
  const STATE_COLORS = { done: "#2f6db5", incomplete: "#e08a00", failed: "#c0392b" };

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function plotlyText(text) { // Plotly labels understand <b>, <br>, &amp;: neutralise them
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // ----------------------------------------------------------------------------------------
  // Numbers and values as text.

  function fmtNum(v) {
    if (v === null || v === undefined) return "";
    if (Number.isInteger(v)) return String(v);
    const s = String(v);
    return s.length <= 8 ? s : v.toPrecision(6).replace(/\.?0+(e|$)/, "$1");
  }

  function plusMinus(mean, std) {
    if (mean === null || mean === undefined) return "";
    if (data.single || std === null || std === undefined) return fmtNum(mean);
    if (!(std > 0)) return fmtNum(mean) + " ± 0";
    const decimals = Math.min(12, Math.max(0, 1 - Math.floor(Math.log10(std))));
    return mean.toFixed(decimals) + " ± " + std.toFixed(decimals);
  }

  function isMissing(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v) && v.missing === true;
  }

  function valueText(v) {
    if (isMissing(v)) return "";
    if (typeof v === "string") return v;
    if (typeof v === "number") return fmtNum(v);
    return JSON.stringify(v);
  }

  function seconds(s) {
    if (s === null || s === undefined) return "";
    if (s < 120) return s.toPrecision(3) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // ----------------------------------------------------------------------------------------
  // Overview and provenance.

  function addItem(dl, term, value) {
    dl.appendChild(el("dt", term));
    dl.appendChild(el("dd", value));
  }

  function counts(obj) {
    return Object.keys(obj).map((k) => obj[k] + " " + k).join(", ") || "none";
  }

  function renderOverview() {
    byId("out-path").textContent = data.out;
    const dl = byId("overview-list");
    addItem(dl, "out", data.out);
    addItem(dl, "report written", data.generated);
    addItem(dl, "backend", data.backend);
    addItem(dl, "experiments", data.experiments + " (" + counts(data.experiment_states) + ")");
    addItem(dl, "runs", counts(data.run_states));
    addItem(dl, "compute time", seconds(data.compute_seconds) + " (sum of stage times)");
    const p = data.provenance;
    if (!p) {
      addItem(dl, "provenance", "not recorded (the sweep was last executed by an older dagrun)");
    } else {
      addItem(dl, "last executed", (p.time || "?") + " by " + (p.user || "?") + "@" + (p.host || "?"));
      const g = p.git;
      addItem(dl, "git", g ? g.commit + " (" + g.branch + ", " +
        (g.dirty === true ? "dirty: uncommitted changes" : g.dirty === false ? "clean"
          : "dirty: unknown, git status timed out") + ") in " + g.root : "not in a git repository");
      addItem(dl, "Python", (p.python || "?") + " " + (p.executable || ""));
      const pk = p.packages || {};
      addItem(dl, "packages", Object.keys(pk).map((k) => k + " " + pk[k]).join(", "));
      addItem(dl, "command", p.command || "");
      addItem(dl, "working folder", p.cwd || "");
      if (p.workflow) addItem(dl, "workflow", p.workflow);
      if (p.platform) addItem(dl, "platform", p.platform);
    }
    const cl = byId("constant-list");
    const keys = Object.keys(data.constant);
    if (!keys.length) cl.appendChild(el("dd", "none"));
    keys.forEach((k) => addItem(cl, k, valueText(data.constant[k])));
  }

  // ----------------------------------------------------------------------------------------
  // The results table: sortable, filterable, paged; best value per metric highlighted.

  const rows = data.rows; // [id, state, n, repetitions, [key values], [[mean, std], ...]]
  const smaller = data.metrics.map((m) => m.smaller);
  const table = { sortCol: null, desc: false, page: 0, pageSize: 100, view: rows.slice() };

  const columns = [{ label: "experiment_id", num: true, value: (r) => r[0], text: (r) => String(r[0]) }]
    .concat(data.keys.map((k, i) => ({
      label: k.name, num: k.numeric, value: (r) => (isMissing(r[4][i]) ? null : r[4][i]),
      text: (r) => valueText(r[4][i]),
    })))
    .concat(data.metrics.map((m, i) => ({
      label: m.name, num: true, metric: i, value: (r) => r[5][i][0],
      text: (r) => plusMinus(r[5][i][0], r[5][i][1]),
    })))
    .concat([
      { label: "state", value: (r) => r[1], text: (r) => r[1], cls: "state" },
      { label: "n", num: true, value: (r) => r[2], text: (r) => String(r[2]) },
    ]);

  function bestRows() {
    return data.metrics.map((m, i) => {
      let best = null;
      rows.forEach((r) => {
        const v = r[5][i][0];
        if (v === null) return;
        if (best === null || (smaller[i] ? v < best : v > best)) best = v;
      });
      return best;
    });
  }
  let best = bestRows();

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1; // no value: last, whatever the direction
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    if (typeof a === "number") return -1;
    if (typeof b === "number") return 1;
    const sa = typeof a === "string" ? a : JSON.stringify(a);
    const sb = typeof b === "string" ? b : JSON.stringify(b);
    return sa < sb ? -1 : sa > sb ? 1 : 0;
  }

  const searchText = new Map();
  function rowText(r) {
    let t = searchText.get(r);
    if (t === undefined) {
      t = columns.map((c) => c.text(r)).join("\u0001").toLowerCase();
      searchText.set(r, t);
    }
    return t;
  }

  function updateView() {
    const needle = byId("filter").value.trim().toLowerCase();
    const state = byId("state-filter").value;
    let view = rows.filter((r) => (!state || r[1] === state) && (!needle || rowText(r).includes(needle)));
    if (table.sortCol !== null) {
      const col = columns[table.sortCol];
      const sign = table.desc ? -1 : 1;
      view = view.map((r, i) => [r, i]).sort((x, y) => {
        const a = col.value(x[0]), b = col.value(y[0]);
        if (a === null || a === undefined || b === null || b === undefined) return compare(a, b) || x[1] - y[1];
        return sign * compare(a, b) || x[1] - y[1];
      }).map((p) => p[0]);
    }
    table.view = view;
    table.page = 0;
    renderBody();
  }

  function renderHead() {
    const thead = byId("results-table").tHead;
    thead.textContent = "";
    const tr = document.createElement("tr");
    columns.forEach((c, ci) => {
      const th = el("th");
      th.appendChild(el("span", c.label, "label"));
      th.dataset.col = String(ci);
      if (table.sortCol === ci) th.className = table.desc ? "sorted-desc" : "sorted-asc";
      th.addEventListener("click", () => {
        table.desc = table.sortCol === ci ? !table.desc : false;
        table.sortCol = ci;
        renderHead();
        updateView();
      });
      if (c.metric !== undefined) {
        const i = c.metric;
        const b = el("button", smaller[i] ? "▼ smaller is better" : "▲ larger is better", "direction");
        b.type = "button";
        b.title = "which value is best; click to flip";
        b.addEventListener("click", (ev) => {
          ev.stopPropagation();
          smaller[i] = !smaller[i];
          best = bestRows();
          renderHead();
          renderBody();
        });
        th.appendChild(b);
      }
      tr.appendChild(th);
    });
    thead.appendChild(tr);
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
      columns.forEach((c) => {
        const td = el("td", c.text(r), c.cls || (c.num ? "num" : ""));
        if (c.metric !== undefined && best[c.metric] !== null && r[5][c.metric][0] === best[c.metric]) {
          td.classList.add("best");
          td.title = "best " + data.metrics[c.metric].name + " (" + (smaller[c.metric] ? "smallest" : "largest") + ")";
        }
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    const total = rows.length, n = table.view.length;
    byId("row-count").textContent = (n ? start + 1 : 0) + "–" + (start + shown.length) + " of " + n +
      (n < total ? " (filtered from " + total + ")" : "") + ", page " + (table.page + 1) + "/" + pages;
  }

  function setupTable() {
    renderHead();
    byId("filter").addEventListener("input", updateView);
    byId("state-filter").addEventListener("change", updateView);
    byId("page-size").addEventListener("change", (ev) => {
      table.pageSize = Number(ev.target.value);
      renderBody();
    });
    byId("prev-page").addEventListener("click", () => { table.page = Math.max(0, table.page - 1); renderBody(); });
    byId("next-page").addEventListener("click", () => { table.page += 1; renderBody(); });
    updateView();
  }

  // ----------------------------------------------------------------------------------------
  // Tooltip with an experiment's config.

  const tooltip = byId("tooltip");

  function showTooltip(r, metricIndex, event) {
    tooltip.textContent = "";
    tooltip.appendChild(el("div", "experiment " + r[0] + " (" + r[1] + ", " + r[2] + " of " + r[3] + " repetitions done)"));
    const m = data.metrics[metricIndex];
    tooltip.appendChild(el("div", m.name + ": " + plusMinus(r[5][metricIndex][0], r[5][metricIndex][1])));
    data.keys.forEach((k, i) => tooltip.appendChild(el("div", k.name + " = " + (isMissing(r[4][i]) ? "(missing)" : valueText(r[4][i])))));
    if (Object.keys(data.constant).length) tooltip.appendChild(el("div", "(+ the constant keys listed above)"));
    tooltip.hidden = false;
    const x = event && event.clientX !== undefined ? event.clientX : 20;
    const y = event && event.clientY !== undefined ? event.clientY : 20;
    tooltip.style.left = Math.min(x + 14, window.innerWidth - tooltip.offsetWidth - 8) + "px";
    tooltip.style.top = Math.min(y + 14, window.innerHeight - tooltip.offsetHeight - 8) + "px";
  }

  // ----------------------------------------------------------------------------------------
  // Plots: each metric against each varied key.

  function categoryLabel(v) {
    return isMissing(v) ? "(missing)" : v === null ? "null" : valueText(v);
  }

  function spansDecades(values) { // positive values over two decades or more: a log axis
    if (!values.length || values.some((v) => !(v > 0))) return false;
    return values.reduce((a, b) => Math.max(a, b)) / values.reduce((a, b) => Math.min(a, b)) >= 100;
  }

  function plotSpec(mi, ki) {
    const key = data.keys[ki];
    const xs = [], ys = [], es = [], colors = [], idx = [];
    rows.forEach((r, ri) => {
      const mean = r[5][mi][0], v = r[4][ki];
      if (mean === null) return;
      if (key.numeric && typeof v !== "number") return;
      xs.push(key.numeric ? v : categoryLabel(v));
      ys.push(mean);
      es.push(r[5][mi][1] || 0);
      colors.push(STATE_COLORS[r[1]] || "#555");
      idx.push(ri);
    });
    const metric = data.metrics[mi].name;
    const trace = {
      type: "scatter", mode: "markers", x: xs, y: ys, customdata: idx, hoverinfo: "none",
      marker: { size: 7, color: colors, opacity: 0.85 },
      error_y: { type: "data", array: es, visible: !data.single, thickness: 1, width: 3 },
    };
    const layout = {
      margin: { l: 60, r: 16, t: 16, b: 48 }, height: 320, hovermode: "closest", showlegend: false,
      xaxis: { title: { text: plotlyText(key.name) }, type: key.numeric ? (key.log ? "log" : "linear") : "category",
        categoryorder: "category ascending", automargin: true },
      yaxis: { title: { text: plotlyText(metric) }, automargin: true, type: spansDecades(ys) ? "log" : "linear" },
    };
    return { trace: trace, layout: layout, points: xs.length };
  }

  let plotsDrawn = 0, plotCount = 0;

  function drawPlot(div) {
    const mi = Number(div.dataset.metric), ki = Number(div.dataset.key);
    const spec = plotSpec(mi, ki);
    div.dataset.points = String(spec.points);
    Plotly.newPlot(div, [spec.trace], spec.layout, { displaylogo: false, responsive: true }).then(() => {
      div.on("plotly_hover", (ev) => {
        const p = ev.points && ev.points[0];
        if (p) showTooltip(rows[p.customdata], mi, ev.event);
      });
      div.on("plotly_unhover", () => { tooltip.hidden = true; });
      div.dataset.rendered = "true";
      plotsDrawn += 1;
      if (plotsDrawn === plotCount) document.body.dataset.plots = "drawn";
    });
  }

  function renderPlots() {
    const grid = byId("plot-grid");
    if (!data.metrics.length || !data.keys.length) {
      grid.appendChild(el("p", data.metrics.length ? "No config key varies: nothing to plot against."
        : "No numeric metric yet.", "note"));
      return;
    }
    const divs = [];
    data.metrics.forEach((m, mi) => data.keys.forEach((k, ki) => {
      const box = el("div", null, "plot-box");
      box.appendChild(el("div", m.name + " vs " + k.name, "plot-title"));
      const div = el("div", null, "plot");
      div.dataset.metric = String(mi);
      div.dataset.key = String(ki);
      div.dataset.title = m.name + " vs " + k.name;
      box.appendChild(div);
      grid.appendChild(box);
      divs.push(div);
    }));
    plotCount = divs.length;
    const lazy = rows.length * divs.length > LAZY_POINTS && "IntersectionObserver" in window;
    if (!lazy) { divs.forEach(drawPlot); return; }
    const seen = new IntersectionObserver((entries) => entries.forEach((e) => {
      if (e.isIntersecting) { seen.unobserve(e.target); drawPlot(e.target); }
    }), { rootMargin: "200px" });
    divs.forEach((d) => seen.observe(d));
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
      const traces = stages.map((s) => ({ type: "box", name: s, y: data.durations[s], hoverinfo: "y",
        boxpoints: data.durations[s].length > 2000 ? false : "outliers" }));
      Plotly.newPlot(div, traces, { margin: { l: 60, r: 16, t: 16, b: 40 }, height: 360, showlegend: false,
        yaxis: { title: { text: "seconds" }, type: spansDecades(all) ? "log" : "linear" } },
      { displaylogo: false, responsive: true }).then(() => { div.dataset.rendered = "true"; });
    }
    const body = data.slowest.map((s) => [s.run, seconds(s.total)].concat(s.stages.map(seconds), [s.path]));
    const t = simpleTable(["run", "total", "pre", "fit", "post", "run folder"], body,
      ["", "num", "num", "num", "num", "path"]);
    const old = byId("slowest-table");
    t.id = "slowest-table";
    old.replaceWith(t);
  }

  renderOverview();
  setupTable();
  renderPlots();
  renderFailures();
  renderTime();
  document.body.dataset.ready = "true";
})();
