// mlsnap report: draws the charts of the page from the JSON in #mlsnap-data with Vega-Lite.
// Recorded text (messages, names, tags) only ever reaches the page as data: Vega draws it as
// SVG text and its tooltips escape it; nothing here builds HTML from it.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("mlsnap-data").textContent);
  var snaps = data.snapshots;
  var state = { log: false, x: "order" };
  var views = new Map();
  var pending = 0;
  var SHAPES = { domain: ["snapshot", "tagged", "HEAD", "best"],
                 range: ["circle", "diamond", "square", "triangle-up"] };
  var TIP = [{ field: "short", title: "commit" }, { field: "name", title: "name" },
             { field: "date", title: "date" }, { field: "message", title: "message" },
             { field: "tags", title: "tags" }];

  function row(i) {
    var s = snaps[i];
    return { i: i, order: i + 1, date: s.created, name: s.name, short: s.short,
             commit: s.commit, message: s.message, tags: s.tags.join(", ") };
  }
  function kindOf(s, best) {
    return best ? "best" : s.head ? "HEAD" : s.tags.length ? "tagged" : "snapshot";
  }
  function labelOf(s) {
    return (s.head ? ["HEAD"] : []).concat(s.tags).join(" ");
  }
  function xEncoding(rows) {
    if (state.x === "date") {
      return { field: "date", type: "temporal", title: "snapshot date (UTC)",
               scale: { padding: 12 } };
    }
    // Half a step of room on either side, so the first and last points clear the axes.
    var orders = rows.map(function (r) { return r.order; });
    var lo = Math.min.apply(null, orders), hi = Math.max.apply(null, orders);
    var pad = Math.max(0.5, (hi - lo) * 0.02);
    return { field: "order", type: "quantitative", title: "snapshot (oldest first)",
             axis: { tickMinStep: 1, format: "d" },
             scale: { zero: false, nice: false, domain: [lo - pad, hi + pad] } };
  }
  function yScale(values, zero) {
    if (!state.log) return { zero: Boolean(zero), padding: 8 };
    return { type: values.every(function (v) { return v > 0; }) ? "log" : "symlog",
             padding: 8 };
  }
  function points(encoding, count) {
    // Smaller marks when there are many, so 1,000 snapshots still read as a curve.
    var size = count > 300 ? 14 : count > 60 ? 30 : 60;
    return { name: "points", mark: { type: "point", filled: true, size: size },
             encoding: encoding };
  }
  function base(rows, layers, height) {
    return { $schema: "https://vega.github.io/schema/vega-lite/v6.json", width: "container",
             height: height || 220, data: { values: rows }, layer: layers,
             config: { legend: { labelLimit: 220, symbolLimit: 24 } } };
  }

  function metricSpec(m) {
    var rows = m.values.map(function (p) {
      var s = snaps[p[0]];
      return Object.assign(row(p[0]), { value: p[1], kind: kindOf(s, p[1] === m.best),
                                        label: labelOf(s) });
    });
    var y = { field: "value", type: "quantitative", title: m.key,
              scale: yScale(m.values.map(function (p) { return p[1]; })) };
    var color = { field: "name", type: "nominal", title: "snapshot name" };
    var x = xEncoding(rows);
    return base(rows, [
      { mark: { type: "line", opacity: 0.35 }, encoding: { x: x, y: y, color: color } },
      points({ x: x, y: y, color: color,
               shape: { field: "kind", type: "nominal", scale: SHAPES, title: "mark" },
               tooltip: TIP.concat([{ field: "value", title: m.key, format: ".6~g" }]) },
             rows.length),
      { transform: [{ filter: "datum.label != ''" }],
        mark: { type: "text", dy: -11, fontSize: 10, color: "#59636e" },
        encoding: { x: x, y: y, text: { field: "label" } } }
    ]);
  }

  function scatterSpec(p, m) {
    var byIndex = new Map(p.values);
    var rows = m.values.filter(function (v) { return byIndex.has(v[0]); }).map(function (v) {
      return Object.assign(row(v[0]), { value: v[1], param: byIndex.get(v[0]),
                                        kind: kindOf(snaps[v[0]], v[1] === m.best) });
    });
    var numeric = rows.every(function (r) { return typeof r.param === "number"; });
    var x = numeric ? { field: "param", type: "quantitative", title: p.key,
                              scale: { zero: false, padding: 12 } }
                    : { field: "param", type: "nominal", title: p.key };
    var y = { field: "value", type: "quantitative", title: m.key,
              scale: yScale(rows.map(function (r) { return r.value; })) };
    return base(rows, [points({ x: x, y: y, color: { field: "name", type: "nominal",
                                                       title: "snapshot name" },
      shape: { field: "kind", type: "nominal", scale: SHAPES, title: "mark" },
      tooltip: TIP.concat([{ field: "param", title: p.key },
                           { field: "value", title: m.key, format: ".6~g" }]) },
                                rows.length)], 300);
  }

  function curveSpec(c) {
    var rows = c.points.map(function (p) {
      return Object.assign(row(p[0]), { step: p[1], value: p[2], path: p[3],
                                        series: snaps[p[0]].short + " " + p[3] });
    });
    var x = { field: "step", type: "quantitative", title: "step", scale: { padding: 12 },
              axis: { tickMinStep: 1, format: "d" } };
    var y = { field: "value", type: "quantitative", title: c.key,
              scale: yScale(c.points.map(function (p) { return p[2]; })) };
    var color = { field: "series", type: "nominal", title: "snapshot and folder" };
    return base(rows, [
      { mark: { type: "line", opacity: 0.5 }, encoding: { x: x, y: y, color: color } },
      points({ x: x, y: y, color: color,
               tooltip: TIP.concat([{ field: "path", title: "folder" }, { field: "step" },
                                    { field: "value", title: c.key, format: ".6~g" }]) },
             rows.length)
    ]);
  }

  function sizeSpec() {
    var rows = data.sizes.map(function (p) {
      return Object.assign(row(p[0]), { path: p[1], size: p[2] });
    });
    var y = { field: "size", type: "quantitative", title: "bytes", axis: { format: "~s" },
              scale: yScale(data.sizes.map(function (p) { return p[2]; }), true) };
    var color = { field: "path", type: "nominal", title: "artifact" };
    var x = xEncoding(rows);
    return base(rows, [
      { mark: { type: "line", opacity: 0.35 }, encoding: { x: x, y: y, color: color } },
      points({ x: x, y: y, color: color,
               tooltip: TIP.concat([{ field: "path", title: "artifact" },
                                    { field: "size", title: "bytes", format: "," }]) },
             rows.length)
    ]);
  }

  function finished() {
    document.body.dataset.charts = String(document.querySelectorAll(".chart svg").length);
    document.body.dataset.ready = "1";
  }
  function embed(el, spec) {
    pending += 1;
    document.body.dataset.ready = "0";
    var old = views.get(el);
    if (old) old.finalize();
    return vegaEmbed(el, spec, { renderer: "svg", actions: false }).then(function (result) {
      views.set(el, result);
      result.view.addEventListener("click", function (event, item) {
        if (item && item.datum && /^[0-9a-f]{40,64}$/.test(item.datum.commit || "")) {
          window.location.hash = "snap-" + item.datum.commit;
        }
      });
    }).catch(function (err) {
      el.dataset.error = String(err);
      console.error("mlsnap report: a chart failed: " + err);
    }).then(function () {
      pending -= 1;
      if (pending === 0) finished();
    });
  }

  function drawMetrics() {
    document.querySelectorAll(".chart[data-metric]").forEach(function (el) {
      embed(el, metricSpec(data.metrics[Number(el.dataset.metric)]));
    });
    var sizes = document.getElementById("chart-sizes");
    if (sizes) embed(sizes, sizeSpec());
    drawCurves();
    drawScatter();
  }
  function drawCurves() {
    document.querySelectorAll(".chart[data-curve]").forEach(function (el) {
      embed(el, curveSpec(data.curve_metrics[Number(el.dataset.curve)]));
    });
  }
  function drawScatter() {
    var el = document.getElementById("chart-scatter");
    var param = document.getElementById("scatter-param");
    var metric = document.getElementById("scatter-metric");
    if (!el || !param || !metric) return;
    embed(el, scatterSpec(data.params[Number(param.value)], data.metrics[Number(metric.value)]));
  }

  function on(id, event, handler) {
    var el = document.getElementById(id);
    if (el) el.addEventListener(event, handler);
  }
  on("log-scale", "change", function (e) { state.log = e.target.checked; drawMetrics(); });
  on("x-axis", "change", function (e) { state.x = e.target.value; drawMetrics(); });
  on("scatter-param", "change", drawScatter);
  on("scatter-metric", "change", drawScatter);
  if (document.querySelectorAll(".chart").length === 0) finished();
  else drawMetrics();
})();
