/* harness report charts: draws the JSON of #report-data with uPlot. Everything shown is computed
   by harness/review/plots.py; this script only draws. It makes no request and logs nothing. */
(function () {
  "use strict";
  var source = document.getElementById("report-data");
  var box = document.getElementById("charts");
  if (!source || !box || typeof uPlot === "undefined") return;
  var D = JSON.parse(source.textContent);
  var C = D.colours;
  var END = D.end > 0 ? D.end : Math.max(1, D.t[D.t.length - 1] + 0.5);
  var LEFT = 64;  // every chart's left and right axes take the same width, so their x axes line up
  var RIGHT = 64;
  var charts = [];
  var zooming = false;
  var dpr = window.devicePixelRatio || 1;

  function offset(v) {
    if (v == null) return "\u2013";
    var s = Math.round(v * 10) / 10;
    var m = Math.floor(Math.abs(s) / 60);
    return (s < 0 ? "-" : "+") + (m ? m + "m" + String(Math.round((Math.abs(s) - m * 60) * 10) / 10).padStart(2, "0") + "s" : Math.abs(s) + "s");
  }
  function fixed(digits, unit) {
    return function (u, v) { return v == null ? "\u2013" : v.toFixed(digits) + unit; };
  }
  function ms(u, v) {
    if (v == null) return "\u2013";
    return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " ms";
  }
  function positive(values) {  // a log axis cannot show 0
    return values.map(function (v) { return v != null && v > 0 ? v : null; });
  }
  function xPos(u, v) {
    var x = u.valToPos(v, "x", true);
    return Math.min(Math.max(x, u.bbox.left), u.bbox.left + u.bbox.width);
  }

  // Fault windows under everything else, in an opaque colour a screenshot can find.
  function shade(u) {
    var ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = C.fault;
    D.faults.forEach(function (f) {
      var x0 = xPos(u, f.from), x1 = xPos(u, f.to);
      if (x1 > x0 || f.to > f.from) ctx.fillRect(x0, u.bbox.top, Math.max(x1 - x0, dpr), u.bbox.height);
    });
    ctx.restore();
  }
  // Phase starts (dashed), aborts (dashed red) and recovery instants (dotted green).
  function mark(u) {
    var ctx = u.ctx;
    ctx.save();
    ctx.lineWidth = dpr;
    D.markers.forEach(function (m) {
      if (m.at < u.scales.x.min || m.at > u.scales.x.max) return;
      var x = Math.round(u.valToPos(m.at, "x", true)) + 0.5;
      ctx.strokeStyle = m.kind === "abort" ? "#b42318" : m.kind === "recovery" ? "#1e7b34" : "#4a5560";
      ctx.setLineDash(m.kind === "recovery" ? [2 * dpr, 3 * dpr] : [5 * dpr, 4 * dpr]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
    });
    ctx.restore();
  }
  // Drag-zoom on one chart zooms them all; double-click zooms every chart out.
  function follow(u, key) {
    if (key !== "x" || zooming) return;
    zooming = true;
    charts.forEach(function (other) {
      if (other !== u) other.setScale("x", { min: u.scales.x.min, max: u.scales.x.max });
    });
    zooming = false;
  }

  function chart(id, series, data, axes, scales, height, hooks, timeline) {
    var target = document.getElementById(id);
    if (!target) return null;
    var opts = {
      width: Math.max(target.clientWidth, 320),
      height: height,
      cursor: { sync: { key: "run" }, drag: { x: true, y: false } },
      scales: Object.assign({ x: { time: false, range: function () { return [0, END]; } } }, scales),
      series: [{ label: "time", value: function (u, v) { return offset(v); } }].concat(series),
      axes: [{ values: function (u, splits) { return splits.map(offset); } }].concat(axes),
      hooks: { drawClear: timeline ? [] : [shade], draw: [mark].concat(hooks || []), setScale: [follow] },
      legend: { show: !timeline },
    };
    var u = new uPlot(opts, [D.t].concat(data), target);
    charts.push(u);
    return u;
  }
  function line(label, colour, extra) {
    return Object.assign({ label: label, stroke: colour, width: 2, spanGaps: false, points: { show: false } }, extra || {});
  }
  // Every axis has a label (a space when it has none) of the same size: uPlot adds the label's
  // size to the axis', and the plots must start and end at the same x on every chart.
  function left(unit, extra) {
    return Object.assign({ scale: "y", size: LEFT, label: unit || " ", labelSize: 20 }, extra || {});
  }
  function right(scale, unit, values) {
    return { scale: scale, side: 1, size: RIGHT, label: unit, labelSize: 20, grid: { show: false }, values: values };
  }
  function noRight() {  // an empty right axis: same width as the others
    return { scale: "y", side: 1, size: RIGHT, label: " ", labelSize: 20, grid: { show: false }, ticks: { show: false }, values: function (u, s) { return s.map(function () { return ""; }); } };
  }
  var logY = { y: { distr: 3, log: 10 } };
  var logTicks = function (u, splits) {
    return splits.map(function (v) { return v == null ? "" : String(+v.toPrecision(3)); });
  };

  // The timeline: one lane per row, its name on the left axis; text only inside a bar wide enough.
  var lanes = D.lanes;
  if (lanes.length) {
    var longest = lanes.reduce(function (n, l) { return Math.max(n, l.label.length); }, 0);
    LEFT = Math.min(Math.max(64, 12 + 6.5 * Math.min(longest, 30)), 240);
    var laneColour = { phase: ["#dfe3e8", "#c9d0d8"], fault: [C.fault], pass: ["#b7dfc2"], fail: ["#f3b1aa"] };
    var drawLanes = function (u) {
      var ctx = u.ctx;
      ctx.save();
      ctx.font = Math.round(11 * dpr) + "px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      lanes.forEach(function (lane, i) {
        var row = lanes.length - 1 - i;  // the first lane on top
        var y0 = u.valToPos(row + 0.85, "y", true), y1 = u.valToPos(row + 0.15, "y", true);
        var colours = laneColour[lane.kind];
        lane.spans.forEach(function (s, j) {
          var x0 = xPos(u, s.from), x1 = xPos(u, s.to);
          ctx.fillStyle = colours[j % colours.length];
          ctx.fillRect(x0, y0, Math.max(x1 - x0, dpr), y1 - y0);
          var text = lane.kind === "phase" ? s.text : "";
          if (text && ctx.measureText(text).width + 8 * dpr < x1 - x0) {
            ctx.fillStyle = "#1d2329";
            ctx.fillText(text, x0 + 4 * dpr, (y0 + y1) / 2);
          }
        });
        var r = lane.recovery;
        if (r) {
          var a = xPos(u, r.from), b = xPos(u, r.to);
          ctx.fillStyle = r.recovered ? "#1e7b34" : "#b42318";
          ctx.fillRect(a, y0 + (y1 - y0) * 0.3, Math.max(b - a, dpr), (y1 - y0) * 0.4);
        }
      });
      ctx.restore();
    };
    var names = lanes.map(function (l) { return l.label.length > 30 ? l.label.slice(0, 29) + "\u2026" : l.label; });
    chart("chart-timeline", [{ label: "", show: false, scale: "y" }], [D.t.map(function () { return null; })], [
      left("", {
        splits: function () { return lanes.map(function (l, i) { return lanes.length - 1 - i + 0.5; }); },
        values: function () { return names; },
        grid: { show: false },
        ticks: { show: false },
      }),
      noRight(),
    ], { y: { range: [0, lanes.length] } }, 48 + 22 * lanes.length, [drawLanes], true);
  } else {
    var fig = document.getElementById("fig-timeline");
    if (fig) fig.remove();
  }

  var load = [line("requests/s", C.requests, { value: fixed(0, "/s") })];
  var loadData = [D.requests];
  if (D.target.some(function (v) { return v != null; })) {
    load.push(line("target rate", C.target, { dash: [6, 4], value: fixed(1, "/s") }));
    loadData.push(D.target);
  }
  if (D.achieved.some(function (v) { return v != null; })) {
    load.push(line("achieved rate", C.achieved, { value: fixed(1, "/s") }));
    loadData.push(D.achieved);
  }
  var hasUsers = D.users.some(function (v) { return v != null; });
  if (hasUsers) {
    load.push(line("users", C.users, { scale: "users", width: 1.5, value: fixed(0, "") }));
    loadData.push(D.users);
  }
  chart("chart-load", load, loadData, [left("per second"), hasUsers ? right("users", "users") : noRight()],
    { y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } }, users: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } }, 240);

  // Highest first: where percentiles coincide (few requests in a second) the lower one stays visible.
  var latency = [
    line("max", C.max, { value: ms, width: 1, dash: [3, 3] }),
    line("p99.9", C.p999, { value: ms, width: 1.5 }),
    line("p99", C.p99, { value: ms }),
    line("p95", C.p95, { value: ms }),
    line("p50", C.p50, { value: ms }),
  ];
  chart("chart-latency", latency, [D.max, D.p999, D.p99, D.p95, D.p50].map(positive),
    [left("ms", { values: logTicks }), noRight()], logY, 280);

  var failures = D.kinds.map(function (k) { return line(k.label, k.colour, { value: fixed(0, "/s"), width: 1.5 }); });
  failures.push(line("error rate", C.error_rate, { scale: "ratio", value: function (u, v) { return v == null ? "\u2013" : (v * 100).toFixed(2) + "%"; } }));
  chart("chart-failures", failures, D.kinds.map(function (k) { return k.values; }).concat([D.error_rate]),
    [left("failed/s"), right("ratio", "error rate", function (u, s) { return s.map(function (v) { return +(v * 100).toPrecision(3) + "%"; }); })],
    { y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } }, ratio: { range: function (u, min, max) { return [0, Math.max(0.01, max * 1.1)]; } } }, 220);

  if (D.probes.length) {
    chart("chart-probes", D.probes.map(function (p) { return line(p.label, p.colour, { value: fixed(3, "") }); }),
      D.probes.map(function (p) { return p.values; }), [left("value"), noRight()], {}, 200);
  }

  D.endpoints.forEach(function (e, i) {
    chart("chart-endpoint-" + i, [
      line("p50", C.endpoint_p50, { value: ms }),
      line("p99", C.endpoint_p99, { value: ms }),
      line("requests/s", C.endpoint_rps, { scale: "rps", width: 1.5, value: fixed(0, "/s") }),
    ], [positive(e.p50), positive(e.p99), e.rps],
    [left("ms", { values: logTicks }), right("rps", "per second")],
    Object.assign({ rps: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } }, logY), 200);
  });

  var fallback = document.getElementById("charts-fallback");
  if (fallback) fallback.remove();
  document.documentElement.setAttribute("data-charts", String(charts.length));

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      charts.forEach(function (u) {
        var w = Math.max(u.root.parentNode.clientWidth, 320);
        if (w !== u.width) u.setSize({ width: w, height: u.height });
      });
    }, 100);
  });
})();
