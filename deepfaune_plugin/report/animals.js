/* --every-animal: every animal box drawn on the thumbnails and in the full view with its own label and score ("too
   small" boxes marked), and each sequence's labels with MaxN and images (added only to the pages of runs with the
   option; report.js draws the page, this marks what it draws, as it draws it). Labels are text, never markup. */
(function () {
  var D = JSON.parse(document.getElementById("df-data").textContent);
  var TOO_SMALL = "too small";
  var TW = 164, TH = 123;  // a thumbnail's frame (report.css): the picture is letterboxed inside it
  var byFile = {}, bySeq = {};
  D.sequences.forEach(function (s) {
    bySeq[s.id] = s;
    s.files.forEach(function (f) { byFile[f.f] = f; });
  });
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function fmtScore(x) { return (Math.floor(x * 100 + 1e-6) / 100).toFixed(2); }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }
  function caption(a) { return a.k === TOO_SMALL ? a.l : a.l + " " + fmtScore(a.s); }
  /* the boxes of one file, in a layer whose own size is the picture's */
  function layer(f) {
    var out = el("div", "animals");
    out.dataset.boxes = f.a.length;
    f.a.forEach(function (a) {
      var box = el("div", "abox" + (a.k === TOO_SMALL ? " small" : "") + (a.df ? " deepfaune" : "") + (a.b[1] < 0.15 ? " below" : ""));
      box.style.cssText = "left:" + 100 * a.b[0] + "%;top:" + 100 * a.b[1] + "%;width:" + 100 * a.b[2] + "%;height:" + 100 * a.b[3] + "%";
      box.dataset.label = a.l;
      box.title = caption(a) + (a.df ? " (DeepFaune's box for the image)" : "");
      box.appendChild(el("span", "alabel", caption(a)));
      out.appendChild(box);
    });
    return out;
  }
  function onThumb(fig) {
    fig.dataset.boxes = "";
    var f = byFile[fig.dataset.file], link = fig.querySelector("a");
    if (!f || !f.a || !f.a.length || !link || !fig.querySelector("img")) return;
    var w = TW, h = TH;
    if (f.ar > TW / TH) h = TW / f.ar; else w = TH * f.ar;
    var l = layer(f);
    l.style.cssText = "left:" + (TW - w) / 2 + "px;top:" + (TH - h) / 2 + "px;width:" + w + "px;height:" + h + "px";
    link.appendChild(l);
    fig.dataset.boxes = f.a.length;
  }
  function onSequence(art) {
    art.dataset.sp = "";
    var s = bySeq[art.dataset.seq], head = art.querySelector(".head");
    if (!s || !s.sp || !head) return;
    var line = el("div", "species-list");
    line.appendChild(el("span", "muted", s.sp.length ? "every animal: " : "no animal box"));
    s.sp.forEach(function (e) {
      var item = el("span", "sp" + (e.k === TOO_SMALL ? " small" : ""));
      item.dataset.key = e.k;
      item.dataset.maxn = e.maxn;
      item.appendChild(el("b", "", e.l));
      item.appendChild(document.createTextNode(" MaxN " + e.maxn + " · " + plural(e.images, "image")));
      line.appendChild(item);
    });
    head.parentNode.insertBefore(line, head.nextSibling);
    art.dataset.sp = s.sp.length;
  }
  function onFullView(frame) {
    frame.dataset.boxes = "";
    var img = frame.querySelector("img"), f = img && byFile[img.getAttribute("alt")];
    if (f && f.a && f.a.length && !f.v) frame.appendChild(layer(f));
  }
  function mark() {
    Array.prototype.forEach.call(document.querySelectorAll("article.seq figure.th[data-file]:not([data-boxes])"), onThumb);
    Array.prototype.forEach.call(document.querySelectorAll("article.seq[data-seq]:not([data-sp])"), onSequence);
    Array.prototype.forEach.call(document.querySelectorAll("#lightbox .frame:not([data-boxes])"), onFullView);
  }
  var E = D.every_animal, cards = document.getElementById("summary");
  if (cards && cards.parentNode) {
    cards.parentNode.insertBefore(el("p", "muted every-animal", "Every animal box is drawn with its own label and score (" +
      plural(E.boxes, "box", "boxes") + ", " + E.too_small + " too small to classify); each sequence lists its labels with " +
      "MaxN (the most animals of it in one image) and the images that hold it."), cards.nextSibling);
  }
  mark();
  new MutationObserver(mark).observe(document.body, { childList: true, subtree: true });
})();
