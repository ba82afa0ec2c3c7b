/* Lays out the run data embedded in this page. Nothing is fetched: the data is in #df-data, the
 * thumbnails are files beside the page. Filters live in the URL hash (#label=...&station=...), so a
 * filtered view can be bookmarked or opened directly. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("df-data").textContent);
  var CHUNK = 24;   // sequences drawn per label before "show more"
  var STRIP = 12;   // thumbnails drawn per sequence before "+N more"
  var CATS = ["animal", "person", "vehicle", "empty"];
  var byId = {};
  D.sequences.forEach(function (s) { byId[s.id] = s; });
  var state = { label: "", station: "" };

  function el(tag, props) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      var v = props[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "cls") node.className = v;
      else if (k === "data") Object.keys(v).forEach(function (d) { node.dataset[d] = v[d]; });
      else if (k === "on") Object.keys(v).forEach(function (e) { node.addEventListener(e, v[e]); });
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v === true ? "" : v);
    });
    return add(node, Array.prototype.slice.call(arguments, 2));
  }
  /* Append children: nodes, strings, numbers, nested arrays; null/false/undefined are skipped. */
  function add(node, children) {
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      if (Array.isArray(c)) add(node, c);
      else node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }
  function fmtScore(x) { return (Math.floor(x * 100 + 1e-6) / 100).toFixed(2); }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }
  function stationName(s) { return s === "" ? "(top folder)" : s; }
  function catClass(entry) { return entry.key === "undefined" ? "cat-undefined" : "cat-" + entry.cat; }
  function duration(sec) {
    if (sec < 90) return sec.toFixed(1) + " s";
    if (sec < 5400) return (sec / 60).toFixed(1) + " min";
    return (sec / 3600).toFixed(1) + " h";
  }

  /* ---- filters (URL hash) ---- */
  function readHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) return;
      var i = part.indexOf("=");
      var k = i < 0 ? part : part.slice(0, i), v = i < 0 ? "" : part.slice(i + 1);
      try { params[decodeURIComponent(k)] = decodeURIComponent(v.replace(/\+/g, " ")); } catch (e) { /* ignore */ }
    });
    state.label = params.label || "";
    state.station = params.station !== undefined ? params.station : "";
    state.stationSet = params.station !== undefined;
  }
  function writeHash(label, station, stationSet) {
    var parts = [];
    if (label) parts.push("label=" + encodeURIComponent(label));
    if (stationSet) parts.push("station=" + encodeURIComponent(station));
    var h = parts.length ? "#" + parts.join("&") : "";
    if (h !== location.hash && !(h === "" && location.hash === "#")) location.hash = h;
    else update();
  }
  function matches(s) {
    return (!state.label || s.label === state.label) && (!state.stationSet || s.station === state.station);
  }
  function setLabel(label) { writeHash(label, state.station, state.stationSet); scrollToList(); }
  function setStation(st) { writeHash(state.label, st, true); scrollToList(); }
  function scrollToList() { var f = document.getElementById("filters"); if (f) f.scrollIntoView({ block: "start" }); }

  /* ---- header, summary, charts ---- */
  function header() {
    var sub = [D.source, D.host ? "host: " + D.host : null, D.started ? "run " + D.started : null].filter(Boolean).join("  ·  ");
    return [
      D.standin ? el("div", { cls: "standin", id: "standin" }, "Stand-in models (random weights): every label and score in this report is meaningless.") : null,
      el("header", { cls: "top" }, el("div", { cls: "inner" },
        el("h1", {}, "DeepFaune report"),
        el("div", { cls: "sub" }, sub)))
    ];
  }
  function card(id, num, label, cls) {
    return el("div", { cls: "card " + (cls || "") }, el("div", { cls: "num", id: id }, String(num)), el("div", { cls: "lbl" }, label));
  }
  function cards() {
    var t = D.totals, rate = D.elapsed > 0 ? (t.files / D.elapsed).toFixed(2) + " files/s" : "";
    return el("div", { cls: "cards", id: "summary" },
      card("n-files", t.files, "files"),
      card("n-sequences", t.sequences, "sequences"),
      card("n-review", t.review, "sequences to review", t.review ? "review" : ""),
      card("n-failed", t.failed, "files failed", t.failed ? "warn" : ""),
      card("t-elapsed", duration(D.elapsed), "run time " + rate),
      card("model", "v" + D.model_version, D.backend + (D.standin ? " (stand-in)" : "")));
  }
  function labelBars() {
    var max = Math.max.apply(null, D.labels.map(function (l) { return l.sequences; }).concat([1]));
    return el("div", { cls: "bars", id: "label-bars" }, D.labels.map(function (l) {
      return el("div", { cls: "bar-row", data: { label: l.label, count: l.sequences } },
        el("button", { cls: "name", title: "show only " + l.label, on: { click: function () { setLabel(l.label); } } }, l.label || "(none)"),
        el("div", { cls: "track" }, el("div", { cls: "fill " + catClass(l), style: "width:" + (100 * l.sequences / max) + "%" })),
        el("span", { cls: "n", title: plural(l.files, "file") }, String(l.sequences)));
    }));
  }
  function stationBars() {
    var max = Math.max.apply(null, D.stations.map(function (s) { return s.sequences; }).concat([1]));
    return el("div", { cls: "bars", id: "station-bars" }, D.stations.map(function (s) {
      return el("div", { cls: "bar-row", data: { station: s.name, count: s.sequences } },
        el("button", { cls: "name", on: { click: function () { setStation(s.name); } } }, stationName(s.name)),
        el("div", { cls: "track" }, CATS.filter(function (c) { return s.cats[c]; }).map(function (c) {
          return el("div", { cls: "fill cat-" + c, title: c + ": " + s.cats[c], style: "width:" + (100 * s.cats[c] / max) + "%" });
        })),
        el("span", { cls: "n" }, String(s.sequences)));
    }));
  }
  function legend() {
    return el("div", { cls: "legend" }, CATS.map(function (c) { return el("span", {}, el("i", { cls: "cat-" + c }), c); }));
  }
  function activityChart() {
    var A = D.activity, bins = A.bins;
    if (!bins.length) return el("p", { cls: "empty-note" }, "No dated sequences.");
    var max = Math.max.apply(null, bins.map(function (b) { return b.n; }).concat([1]));
    var cols = bins.map(function (b) {
      var tip = b.t + ": " + plural(b.n, "sequence") + CATS.filter(function (c) { return b.cats[c]; })
        .map(function (c) { return ", " + c + " " + b.cats[c]; }).join("");
      return el("div", { cls: "col", title: tip, data: { t: b.t, n: b.n } }, CATS.filter(function (c) { return b.cats[c]; }).map(function (c) {
        return el("div", { cls: "seg cat-" + c, style: "height:" + (100 * b.cats[c] / max) + "%" });
      }));
    });
    var mid = bins[Math.floor(bins.length / 2)].t;
    return el("div", {},
      el("div", { cls: "activity", id: "activity" }, cols),
      el("div", { cls: "axis" }, el("span", {}, bins[0].t), bins.length > 2 ? el("span", {}, mid) : null,
        bins.length > 1 ? el("span", {}, bins[bins.length - 1].t) : null),
      el("div", { cls: "muted", style: "font-size:12px" }, "sequences per " + A.unit + ", tallest bar " + max +
        (A.undated ? "; " + plural(A.undated, "undated sequence") + " not shown" : "") +
        (A.file_dated ? "; " + plural(A.file_dated, "sequence") + " dated only by a video's file time not shown" : "")),
      legend());
  }
  /* sequences by the hour they start (the camera's clock): when each kind of animal is about */
  function hourChart() {
    var hours = D.activity.hours || [];
    var max = Math.max.apply(null, hours.map(function (b) { return b.n; }).concat([1]));
    if (!hours.some(function (b) { return b.n; })) return el("p", { cls: "empty-note" }, "No dated sequences.");
    return el("div", {},
      el("div", { cls: "activity", id: "hours" }, hours.map(function (b) {
        var tip = (b.h < 10 ? "0" : "") + b.h + ":00–" + (b.h < 9 ? "0" : "") + (b.h + 1) + ":00: " + plural(b.n, "sequence") +
          CATS.filter(function (c) { return b.cats[c]; }).map(function (c) { return ", " + c + " " + b.cats[c]; }).join("");
        return el("div", { cls: "col", title: tip, data: { h: b.h, n: b.n } }, CATS.filter(function (c) { return b.cats[c]; }).map(function (c) {
          return el("div", { cls: "seg cat-" + c, style: "height:" + (100 * b.cats[c] / max) + "%" });
        }));
      })),
      el("div", { cls: "axis" }, ["00", "06", "12", "18", "24"].map(function (t) { return el("span", {}, t + ":00"); })),
      el("div", { cls: "muted", style: "font-size:12px" }, "sequences by the hour they start, tallest bar " + max));
  }
  /* species × station: sequences, independent events (camtrapR's rule) and, with deployments, the rate */
  function speciesStations() {
    var T = D.species_stations || { rows: [] };
    if (!T.rows.length) return el("p", { cls: "empty-note" }, "No detections.");
    var withDays = T.rows.some(function (r) { return r.trap_days !== null; });
    return el("div", {},
      el("table", { cls: "plain", id: "species-stations" },
        el("thead", {}, el("tr", {}, el("th", {}, "label"), el("th", {}, "station"), el("th", { cls: "n" }, "sequences"),
          el("th", { cls: "n", title: "a sequence more than " + T.gap_minutes + " min after the previous independent one of the same label at the same station" }, "independent events"),
          withDays ? [el("th", { cls: "n" }, "trap-days"), el("th", { cls: "n" }, "events / 100 trap-days")] : null)),
        el("tbody", {}, T.rows.map(function (r) {
          return el("tr", { data: { label: r.label, station: r.station } },
            el("td", {}, el("button", { cls: "name", on: { click: function () { writeHash(r.label, r.station, true); scrollToList(); } } }, r.label)),
            el("td", {}, stationName(r.station)), el("td", { cls: "n" }, String(r.sequences)),
            el("td", { cls: "n", title: r.undated ? plural(r.undated, "sequence") + " without a trusted date not counted" : null }, String(r.events) + (r.undated ? " *" : "")),
            withDays ? [el("td", { cls: "n" }, r.trap_days === null ? "—" : r.trap_days.toFixed(1)),
              el("td", { cls: "n" }, r.rate === null ? "—" : r.rate.toFixed(2))] : null);
        }))),
      el("p", { cls: "muted", style: "font-size:12px" }, "Independent events: " + T.gap_minutes + " min apart (camtrapR's minDeltaTime, against the last independent record)" +
        (withDays ? "; trap-days from the deployments' start and end." : "; trap-days need deployments (a Camtrap DP source).") +
        (T.rows.some(function (r) { return r.undated; }) ? " * some sequences have no trusted date and are not counted as events." : "")));
  }
  /* deployments map: an inline SVG laid out in Python (view.station_map); names go in as text nodes only */
  var SVG_NS = (function () {  /* the HTML parser's own SVG namespace: the page holds no URL, not even that one */
    var probe = document.createElement("div");
    probe.innerHTML = "<svg></svg>";  /* a constant: no data ever goes through innerHTML */
    return probe.firstChild.namespaceURI;
  })();
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]); });
    return add(node, Array.prototype.slice.call(arguments, 2));
  }
  function distance(km) { return km < 1 ? Math.round(km * 1000) + " m" : km + " km"; }
  function stationMap() {
    var M = D.map, W = M.width, H = M.height, bar = M.scale;
    var markers = M.markers.map(function (m) {
      var right = m.x > W * 0.7;  /* a label near the right edge goes to the marker's left */
      var tip = stationName(m.name) + " (" + m.lat.toFixed(5) + ", " + m.lon.toFixed(5) + "): " +
        plural(m.animals, "sequence") + " with animals" +
        (m.species.length ? ": " + m.species.map(function (e) { return e[0] + " " + e[1]; }).join(", ") : "");
      return svg("g", { "class": "station" + (m.animals ? "" : " none"), "data-station": m.name, "data-animals": m.animals },
        svg("title", {}, tip),
        svg("circle", { cx: m.x, cy: m.y, r: m.r }),
        svg("text", { x: right ? m.x - m.r - 4 : m.x + m.r + 4, y: m.y + 4, "text-anchor": right ? "end" : "start" },
          stationName(m.name) + " (" + m.animals + ")"));
    });
    var x0 = 20, y0 = H - 18;
    var map = svg("svg", { id: "station-map", viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
                           "aria-label": "map of the deployments" },
      svg("rect", { "class": "frame", x: 0.5, y: 0.5, width: W - 1, height: H - 1 }),
      svg("g", { "class": "north", transform: "translate(" + (W - 24) + ",16)" },
        svg("path", { d: "M0 0 L7 20 L0 15 L-7 20 Z" }), svg("text", { x: 0, y: 34, "text-anchor": "middle" }, "N")),
      svg("g", { "class": "scale", id: "map-scale", "data-km": bar.km },
        svg("path", { d: "M" + x0 + " " + (y0 - 5) + " V" + y0 + " H" + (x0 + bar.px) + " V" + (y0 - 5) }),
        svg("text", { x: x0 + bar.px / 2, y: y0 - 8, "text-anchor": "middle" }, distance(bar.km))),
      markers);
    /* a click on a station filters the list below to it, like its bar */
    map.addEventListener("click", function (e) {
      var g = e.target.closest ? e.target.closest("g.station") : null;
      if (g) setStation(g.getAttribute("data-station"));
    });
    return el("div", { cls: "map" }, map,
      el("p", { cls: "muted", style: "font-size:12px" }, "Marker size: sequences with animals. Local flat projection (north up), " +
        "no background map; coordinates from the deployments."),
      M.missing.length ? el("p", { cls: "muted", id: "map-missing" }, "no coordinates: " + M.missing.map(stationName).join(", ")) : null);
  }
  function panels() {
    return el("div", { cls: "panels" },
      el("section", { cls: "panel" }, el("h2", {}, "Sequences per label"), labelBars()),
      el("section", { cls: "panel" }, el("h2", {}, "Activity"), activityChart(),
        el("h2", { style: "margin-top:16px" }, "Time of day"), hourChart(),
        D.stations.length > 1 ? [el("h2", { style: "margin-top:16px" }, "Sequences per station"), stationBars()] : null),
      el("section", { cls: "panel wide" }, el("h2", {}, "Species × station"), speciesStations()),
      D.map ? el("section", { cls: "panel wide", id: "map-panel" }, el("h2", {}, "Deployments"), stationMap()) : null);
  }
  /* ---- evaluation against the human labels the source holds (evaluate.Evaluation, computed in Python) ---- */
  var EVAL_NS = (function () {  /* the HTML parser's own SVG namespace: the page holds no URL */
    var probe = document.createElement("div");
    probe.innerHTML = "<svg></svg>";
    return probe.firstChild.namespaceURI;
  })();
  function evalSvg(tag, attrs) {
    var node = document.createElementNS(EVAL_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]); });
    return add(node, Array.prototype.slice.call(arguments, 2));
  }
  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%"; }
  var EVAL_LINES = [["image", "coverage", "#9aa0a6", "4 3"], ["image", "accuracy", "#2e6b4f", "4 3"],
                    ["sequence", "coverage", "#5f6b73", null], ["sequence", "accuracy", "#d98200", null]];
  /* coverage and accuracy against the threshold: one line each, per image (dashed) and per sequence */
  function evalChart(E) {
    var W = 460, H = 240, L = 44, R = 12, T = 12, B = 34;
    var ts = E.sweep.map(function (s) { return s.t; }).filter(function (t, i, a) { return a.indexOf(t) === i; }).sort(function (a, b) { return a - b; });
    var t0 = Math.min(0.5, ts[0]), t1 = Math.max(0.95, ts[ts.length - 1]);
    function x(t) { return L + (W - L - R) * (t - t0) / ((t1 - t0) || 1); }
    function y(v) { return T + (H - T - B) * (1 - v); }
    var grid = [0, 0.25, 0.5, 0.75, 1].map(function (v) {
      return evalSvg("g", {}, evalSvg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#dde3e7" }),
        evalSvg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11 }, (100 * v) + "%"));
    });
    var ticks = ts.map(function (t) {
      return evalSvg("text", { x: x(t), y: H - B + 16, "text-anchor": "middle", "font-size": 10 }, t.toFixed(2));
    });
    var lines = EVAL_LINES.map(function (spec) {
      var pts = E.sweep.filter(function (s) { return s.level === spec[0]; }).sort(function (a, b) { return a.t - b.t; });
      return evalSvg("g", { "class": "eval-line", "data-level": spec[0], "data-metric": spec[1] },
        evalSvg("polyline", { fill: "none", stroke: spec[2], "stroke-width": 2, "stroke-dasharray": spec[3],
                              points: pts.map(function (s) { return x(s.t) + "," + y(s[spec[1]]); }).join(" ") }),
        pts.map(function (s) {
          return evalSvg("circle", { cx: x(s.t), cy: y(s[spec[1]]), r: 3, fill: spec[2], "data-t": s.t.toFixed(2), "data-v": s[spec[1]] },
            evalSvg("title", {}, spec[0] + " " + spec[1] + " at " + s.t.toFixed(2) + ": " + pct(s[spec[1]])));
        }));
    });
    var run = evalSvg("line", { id: "eval-run-threshold", x1: x(E.threshold), x2: x(E.threshold), y1: T, y2: H - B,
                                stroke: "#8e44ad", "stroke-dasharray": "2 2" });
    var chart = evalSvg("svg", { id: "eval-chart", viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
                                 "aria-label": "coverage and accuracy for every threshold" },
      grid, ticks, run, lines,
      evalSvg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11 }, "threshold"));
    var key = el("div", { cls: "legend" }, EVAL_LINES.map(function (spec) {
      return el("span", {}, el("i", { style: "background:" + spec[2] }), spec[1] + " per " + spec[0] + (spec[3] ? " (dashed)" : ""));
    }));
    return el("div", {}, chart, key);
  }
  function evalSweepTable(E) {
    var by = {};
    E.sweep.forEach(function (s) { by[s.level + "@" + s.t] = s; });
    var ts = E.sweep.map(function (s) { return s.t; }).filter(function (t, i, a) { return a.indexOf(t) === i; }).sort(function (a, b) { return a - b; });
    return el("table", { cls: "plain", id: "eval-sweep" },
      el("thead", {}, el("tr", {}, el("th", {}, "threshold"), el("th", { cls: "n" }, "coverage (image)"), el("th", { cls: "n" }, "accuracy (image)"),
        el("th", { cls: "n" }, "coverage (sequence)"), el("th", { cls: "n" }, "accuracy (sequence)"))),
      el("tbody", {}, ts.map(function (t) {
        var im = by["image@" + t], sq = by["sequence@" + t];
        return el("tr", { data: { t: t.toFixed(2) }, cls: t === E.threshold ? "run" : null },
          el("td", {}, t.toFixed(2) + (t === E.threshold ? " (this run)" : "")),
          el("td", { cls: "n", title: im.covered + " of " + im.labelled }, pct(im.coverage)),
          el("td", { cls: "n", title: im.correct + " of " + im.covered }, pct(im.accuracy)),
          el("td", { cls: "n", title: sq.covered + " of " + sq.labelled }, pct(sq.coverage)),
          el("td", { cls: "n", title: sq.correct + " of " + sq.covered }, pct(sq.accuracy)));
      })));
  }
  function evalConfusion(E, level) {
    var rows = E.confusion[level] || [];
    var humans = rows.map(function (r) { return r.human; }).filter(function (v, i, a) { return a.indexOf(v) === i; }).sort();
    var preds = rows.map(function (r) { return r.deepfaune; }).filter(function (v, i, a) { return a.indexOf(v) === i; }).sort();
    var n = {};
    rows.forEach(function (r) { n[r.human + "\u0000" + r.deepfaune] = r.n; });
    return el("table", { cls: "plain", id: "eval-confusion-" + level },
      el("thead", {}, el("tr", {}, el("th", {}, "person ↓ / DeepFaune →"), preds.map(function (p) { return el("th", { cls: "n" }, p); }))),
      el("tbody", {}, humans.map(function (h) {
        return el("tr", { data: { human: h } }, el("th", {}, h), preds.map(function (p) {
          var v = n[h + "\u0000" + p] || 0;
          return el("td", { cls: "n" + (h === p && v ? " hit" : ""), data: { deepfaune: p, n: v } }, v ? String(v) : "·");
        }));
      })));
  }
  function evalClasses(E, level) {
    return el("table", { cls: "plain", id: "eval-classes-" + level },
      el("thead", {}, el("tr", {}, el("th", {}, "label"), el("th", { cls: "n" }, "labelled by people"), el("th", { cls: "n" }, "by DeepFaune"),
        el("th", { cls: "n" }, "both"), el("th", { cls: "n" }, "precision"), el("th", { cls: "n" }, "recall"))),
      el("tbody", {}, (E.classes[level] || []).map(function (c) {
        return el("tr", { data: { label: c.label } }, el("td", {}, c.label), el("td", { cls: "n" }, String(c.support)),
          el("td", { cls: "n" }, String(c.predicted)), el("td", { cls: "n" }, String(c.correct)),
          el("td", { cls: "n" }, pct(c.precision)), el("td", { cls: "n" }, pct(c.recall)));
      })));
  }
  function evaluationSection() {
    var E = D.evaluation;
    if (!E) return null;
    return el("section", { cls: "panel wide", id: "evaluation" },
      el("h2", {}, "Evaluation"),
      el("p", { cls: "muted" }, "DeepFaune's labels against the " + plural(E.labelled, "file") + " people labelled in the source, re-decided at every " +
        "threshold from this run's outputs (no model ran again). Coverage: the share of labelled files DeepFaune gave a label (not undefined); " +
        "accuracy: the share of those whose label is the person's. Failed files are left out."),
      evalChart(E), evalSweepTable(E),
      el("h3", {}, "Per sequence, at this run's threshold (" + E.threshold + ")"), evalConfusion(E, "sequence"), evalClasses(E, "sequence"),
      el("details", {}, el("summary", {}, "Per image"), evalConfusion(E, "image"), evalClasses(E, "image")),
      E.notes && E.notes.length ? el("details", { id: "eval-notes" }, el("summary", {}, plural(E.notes.length, "label") + " left out"),
        el("ul", {}, E.notes.map(function (n) { return el("li", {}, n); }))) : null);
  }
  function issueTable(rows, id) {
    return el("table", { cls: "plain", id: id }, el("thead", {}, el("tr", {}, el("th", {}, "file"), el("th", {}, "reason"))),
      el("tbody", {}, rows.map(function (r) { return el("tr", { data: { file: r.f } }, el("td", { cls: "mono" }, r.f), el("td", { cls: "reason" }, r.reason)); })));
  }
  function failures() {
    var out = [];
    if (D.failures.length) out.push(el("details", { open: D.failures.length <= 20, id: "failures" },
      el("summary", {}, plural(D.failures.length, "file") + " could not be processed"), issueTable(D.failures, "failure-table")));
    if (D.problems.length) out.push(el("details", { open: D.problems.length <= 20, id: "problems" },
      el("summary", {}, plural(D.problems.length, "entry", "entries") + " of the source could not be used"), issueTable(D.problems, "problem-table")));
    return out;
  }

  /* ---- sequences ---- */
  function thumb(s, i) {
    var f = s.files[i];
    var cap = el("figcaption", { title: f.f + (f.d ? "  " + f.d : "") }, el("b", {}, f.pb), " " + fmtScore(f.sb) + "  ", f.f.split("/").pop());
    var missing = function (why) { return el("div", { cls: "missing", data: { broken: why } }, why === "none" ? "no thumbnail" : "thumbnail not found (copy the .deepfaune-thumbs folder with this page)"); };
    var pic = f.t ? el("img", { src: f.t, loading: "lazy", alt: f.f, width: 164, height: 123,
                                on: { error: function () { this.replaceWith(missing("error")); } } })
                  : missing("none");
    var link = el("a", { href: f.h || f.t || null, title: f.f, on: { click: function (e) { if (e.button === 0 && !e.ctrlKey && !e.metaKey) { e.preventDefault(); openBox(s, i); } } } }, pic);
    return el("figure", { cls: "th", data: { file: f.f } }, link, cap);
  }
  function seqCard(s) {
    var n = s.files.length;
    var when = s.start ? (s.end && s.end !== s.start ? s.start + " → " + s.end.slice(s.start.slice(0, 10) === s.end.slice(0, 10) ? 11 : 0) : s.start) : "no date";
    var strip = el("div", { cls: "strip" });
    function fill(upto) {
      strip.textContent = "";
      for (var i = 0; i < Math.min(n, upto); i++) strip.appendChild(thumb(s, i));
      if (n > upto) strip.appendChild(el("button", { cls: "more", on: { click: function () { fill(n); } } }, "+" + (n - upto) + " more"));
    }
    fill(STRIP);
    return el("article", { cls: "seq", data: { seq: s.id, label: s.label, station: s.station, cat: s.cat, review: s.review || "" } },
      el("div", { cls: "head" },
        el("span", { cls: "label" }, s.label),
        el("span", { cls: "score", title: "sequence score" }, fmtScore(s.score)),
        s.review ? el("span", { cls: "badge " + s.review }, s.review === "near" ? "near threshold" : "undefined") : null,
        s.fd ? el("span", { cls: "badge file-date", title: "a video without a creation date: dated by its file time, kept out of the charts" }, "file date") : null,
        s.top1 && s.top1 !== s.label ? el("span", { cls: "top1" }, "top1: ", el("b", {}, s.top1)) : null,
        el("span", { cls: "muted" }, "station " + stationName(s.station)),
        el("span", { cls: "muted" }, when),
        el("span", { cls: "muted" }, plural(n, "image") + "  ·  seq #" + s.id)),
      strip);
  }
  function chunked(list, container) {
    var shown = 0;
    var more = el("button", { cls: "more" });
    function next() {
      var upto = Math.min(list.length, shown + CHUNK);
      for (; shown < upto; shown++) container.insertBefore(seqCard(list[shown]), more);
      if (shown < list.length) more.textContent = "show " + Math.min(CHUNK, list.length - shown) + " more of " + (list.length - shown);
      else more.remove();
    }
    more.addEventListener("click", next);
    container.appendChild(more);
    next();
  }
  function byStationTime(a, b) {
    return a.station < b.station ? -1 : a.station > b.station ? 1 : (a.start || "~") < (b.start || "~") ? -1 : (a.start || "~") > (b.start || "~") ? 1 : a.id - b.id;
  }

  var filterBox = el("div", { cls: "filters", id: "filters" });
  var reviewBox = el("section", { id: "review" });
  var groupsBox = el("section", { id: "sequences" });

  function filterBar() {
    var labelSel = el("select", { id: "filter-label", on: { change: function () { setLabel(this.value); } } },
      el("option", { value: "" }, "all labels"),
      D.labels.map(function (l) { return el("option", { value: l.label, selected: l.label === state.label }, l.label + " (" + l.sequences + ")"); }));
    var stSel = el("select", { id: "filter-station", on: { change: function () {
      if (this.value === "*") writeHash(state.label, "", false); else setStation(this.value.slice(1)); } } },
      el("option", { value: "*" }, "all stations"),
      D.stations.map(function (s) { return el("option", { value: "=" + s.name, selected: state.stationSet && s.name === state.station }, stationName(s.name) + " (" + s.sequences + ")"); }));
    var shown = D.sequences.filter(matches).length;
    filterBox.textContent = "";
    add(filterBox, [el("label", { for: "filter-label" }, "Label"), labelSel, el("label", { for: "filter-station" }, "Station"), stSel,
      (state.label || state.stationSet) ? el("button", { on: { click: function () { writeHash("", "", false); } } }, "show all") : null,
      el("span", { cls: "shown", id: "shown" }, plural(shown, "sequence") + " shown")]);
  }
  function reviewSection() {
    var list = D.review.map(function (id) { return byId[id]; }).filter(matches);
    reviewBox.textContent = "";
    add(reviewBox, [el("h2", {}, "To review (" + list.length + ")"),
      el("p", { cls: "muted" }, "Undefined sequences, then those whose score is within " + D.margin + " of the threshold (" + D.threshold + "), least certain first.")]);
    if (!list.length) reviewBox.appendChild(el("p", { cls: "empty-note" }, "Nothing to review" + (state.label || state.stationSet ? " in this selection." : ".")));
    else chunked(list, reviewBox);
  }
  function groupsSection() {
    groupsBox.textContent = "";
    groupsBox.appendChild(el("h2", {}, "All sequences, by label"));
    var any = false;
    D.labels.forEach(function (l) {
      if (state.label && l.label !== state.label) return;
      var list = D.sequences.filter(function (s) { return s.label === l.label && matches(s); }).sort(byStationTime);
      if (!list.length) return;
      any = true;
      var box = el("section", { cls: "group", data: { label: l.label } },
        el("h3", {}, l.label, " ", el("span", { cls: "count" }, "— " + plural(list.length, "sequence"))));
      chunked(list, box);
      groupsBox.appendChild(box);
    });
    if (!any) groupsBox.appendChild(el("p", { cls: "empty-note" }, "No sequence matches this filter."));
  }

  /* ---- run details ---- */
  function kvTable(rows, id) {
    return el("table", { cls: "plain", id: id }, el("tbody", {}, rows.map(function (r) {
      return el("tr", {}, el("th", {}, r[0]), el("td", { cls: r[2] || "" }, r[1]));
    })));
  }
  function details() {
    var settings = Object.keys(D.settings).map(function (k) {
      var v = D.settings[k];
      return [k, v === null ? "—" : Array.isArray(v) ? (v.length ? v.join(", ") : "—") : String(v), "mono"];
    });
    var models = D.models.length ? el("table", { cls: "plain", id: "models" },
      el("thead", {}, el("tr", {}, el("th", {}, "role"), el("th", {}, "file"), el("th", {}, "sha256"))),
      el("tbody", {}, D.models.map(function (m) { return el("tr", {}, el("td", {}, m.role), el("td", { cls: "mono" }, m.file), el("td", { cls: "mono" }, m.sha256)); })))
      : el("p", { cls: "empty-note" }, "The backend named no model files.");
    var outputs = (D.outputs || []).map(function (o) { return el("li", {}, el("a", { href: o.href }, o.name)); });
    return el("section", { id: "run" },
      el("h2", {}, "Run"),
      kvTable([["plugin", "deepfaune-plugin " + D.plugin_version], ["backend", D.backend], ["model version", D.model_version],
        ["source", D.source, "mono"], ["host", D.host || "—"], ["started", D.started || "—"], ["finished", D.finished || "—"],
        ["elapsed", duration(D.elapsed)]], "run-table"),
      el("h3", {}, "Models"), models,
      el("h3", {}, "Settings"), kvTable(settings, "settings"),
      outputs.length ? [el("h3", {}, "Outputs"), el("ul", {}, outputs)] : null,
      D.record ? el("p", {}, "Full record of this run: ", el("a", { href: D.record }, D.record)) : null);
  }

  /* ---- full view ---- */
  var box = { seq: null, i: 0 };
  var lb = el("div", { id: "lightbox", role: "dialog", on: { click: function (e) { if (e.target === lb) closeBox(); } } });
  function openBox(s, i) { box.seq = s; box.i = i; drawBox(); lb.classList.add("open"); }
  function closeBox() { lb.classList.remove("open"); lb.textContent = ""; box.seq = null; }
  function step(d) { if (!box.seq) return; box.i = (box.i + d + box.seq.files.length) % box.seq.files.length; drawBox(); }
  function drawBox() {
    var s = box.seq, f = s.files[box.i];
    var src = f.h || f.t;
    var frame = el("div", { cls: "frame" });
    if (f.v) {
      /* the video itself; its box belongs to one frame, drawn on the thumbnail, so none is laid over it */
      var ext = (f.f.split(".").pop() || "").toUpperCase();
      add(frame, [el("video", { src: f.h, controls: true, preload: "metadata", poster: f.t || null, on: { error: function () {
        frame.replaceChildren(f.t ? el("img", { src: f.t, alt: f.f }) : "",
          el("p", { data: { broken: "video" } }, "This browser cannot play ." + ext + " files here: ",
            el("a", { href: f.h, target: "_blank" }, "open " + f.f.split("/").pop()), " in a video player (moved, or not copied with this page?)"));
      } } })]);
    } else {
      add(frame, [src ? el("img", { src: src, alt: f.f, on: { error: function () {
        frame.replaceChildren(el("p", { data: { broken: "full" } }, "Cannot show " + f.f + " (moved, or not copied with this page?)"));
      } } }) : el("p", {}, "no image")]);
    }
    if (f.b && !f.v) frame.appendChild(el("div", { cls: "box " + f.bcat, style: "left:" + 100 * f.b[0] + "%;top:" + 100 * f.b[1] + "%;width:" + 100 * f.b[2] + "%;height:" + 100 * f.b[3] + "%" }));
    lb.textContent = "";
    add(lb, [frame,
      el("div", { cls: "cap" }, el("b", {}, f.f), "  ·  image: " + f.pb + " " + fmtScore(f.sb) + "  ·  sequence: " + s.label + " " + fmtScore(s.score) +
        (f.bc !== null ? "  ·  box " + f.bc.toFixed(2) + (f.v && f.fn !== null && f.fn !== undefined ? " (frame " + f.fn + ", on the thumbnail)" : "") : "") +
        (f.d ? "  ·  " + f.d + (f.ds === "file date" ? " (the file's time: a guess)" : "") : "") + "  ·  " + (box.i + 1) + "/" + s.files.length + "  ",
        f.h ? el("a", { href: f.h, target: "_blank" }, "open file") : null),
      s.files.length > 1 ? [el("button", { cls: "nav prev", title: "previous (←)", on: { click: function () { step(-1); } } }, "‹"),
        el("button", { cls: "nav next", title: "next (→)", on: { click: function () { step(1); } } }, "›")] : null,
      el("button", { cls: "close", title: "close (Esc)", on: { click: closeBox } }, "×")]);
  }
  document.addEventListener("keydown", function (e) {
    if (!box.seq) return;
    if (e.key === "Escape") closeBox(); else if (e.key === "ArrowLeft") step(-1); else if (e.key === "ArrowRight") step(1);
  });

  function update() { readHash(); filterBar(); reviewSection(); groupsSection(); }
  /* "#open=SEQ.I" opens image I (from 0) of sequence SEQ in the full view: a link to one picture. */
  function openFromHash() {
    var m = /(?:^#|&)open=(\d+)(?:\.(\d+))?/.exec(location.hash);
    var s = m && byId[m[1]];
    if (s) openBox(s, Math.min(Number(m[2] || 0), s.files.length - 1));
  }

  var app = document.getElementById("app");
  readHash();
  var main = el("main", {}, cards(), panels(), evaluationSection(), failures(), filterBox, reviewBox, groupsBox, details(),
    el("footer", {}, "Made by deepfaune-plugin " + D.plugin_version + ". Self-contained: opens offline; thumbnails are in the folder beside this page."));
  add(app, [header(), main, lb]);
  update();
  openFromHash();
  window.addEventListener("hashchange", function () { update(); openFromHash(); });
  document.documentElement.dataset.ready = "1";
})();
