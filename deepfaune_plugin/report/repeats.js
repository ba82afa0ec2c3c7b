/* --drop-repeats: the boxes set aside as repeats, one thumbnail per place and station (added only to the pages
   of runs with the option, after report.js has drawn the rest). */
(function () {
  var D = JSON.parse(document.getElementById("df-data").textContent);
  var R = D.repeats || [];
  function el(tag, props) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (k) {
      var v = props[k];
      if (v === null || v === undefined) return;
      if (k === "cls") node.className = v;
      else if (k === "data") Object.keys(v).forEach(function (d) { node.dataset[d] = v[d]; });
      else node.setAttribute(k, v);
    });
    (function put(list) {
      list.forEach(function (c) {
        if (c === null || c === undefined) return;
        if (Array.isArray(c)) put(c);
        else node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
      });
    })(Array.prototype.slice.call(arguments, 2));
    return node;
  }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }
  var stations = [];
  R.forEach(function (g) { if (stations.indexOf(g.station) < 0) stations.push(g.station); });
  var boxes = R.reduce(function (n, g) { return n + g.files.length; }, 0);
  var section = el("section", { cls: "panel wide", id: "repeats" },
    el("h2", {}, "Set aside as repeats (" + plural(R.length, "place") + ")"),
    el("p", { cls: "muted" }, "Animal boxes at the same place in many images of one station (a branch, a rock, a post): " +
      "they no longer count for the images' labels and counts, and each image's warning says so. " +
      (D.settings && D.settings.repeat_iou !== undefined ? "Same place: overlap (IoU) at least " + D.settings.repeat_iou +
        " in at least " + D.settings.repeat_min_images + " images. " : "") +
      "Confirm or restore them in deepfaune review."),
    R.length ? null : el("p", { cls: "empty-note" }, "No box was repeated often enough to be set aside."));
  stations.forEach(function (st) {
    var groups = R.filter(function (g) { return g.station === st; });
    section.appendChild(el("h3", {}, "station " + (st === "" ? "(top folder)" : st) + " — " + plural(groups.length, "place")));
    section.appendChild(el("div", { cls: "strip" }, groups.map(function (g) {
      var pic = g.t ? el("img", { src: g.t, loading: "lazy", alt: g.f, width: 164, height: 123 })
                    : el("div", { cls: "missing" }, "no thumbnail");
      return el("figure", { cls: "th repeat", data: { file: g.f, station: g.station, n: g.n } },
        el("a", { href: g.h || g.t || null, title: g.f, target: "_blank" }, pic),
        el("figcaption", { title: g.f }, el("b", {}, plural(g.n, "image")), " " + g.f.split("/").pop()),
        el("details", {}, el("summary", {}, "files"), el("ul", { cls: "mono" }, g.files.map(function (f) { return el("li", {}, f); }))));
    })));
  });
  section.dataset.boxes = boxes;
  var before = document.getElementById("filters");
  if (before && before.parentNode) before.parentNode.insertBefore(section, before);
  else document.body.appendChild(section);
})();
