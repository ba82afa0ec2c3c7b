// The review page: keyboard first. Everything it shows comes from /api (the token rides in a same-site
// cookie for reads and in a header for every change); every text is set with textContent, never as HTML.
"use strict";
(function () {
  const token = document.body.dataset.token;
  history.replaceState(null, "", "/");  // the token stays out of the history and of copied links
  const state = { page: 0, pages: 1, seqs: [], cur: 0, pic: 0, selected: new Set(), labels: [], choice: 0 };
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function api(path, body) {
    const init = { credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.headers["X-Review-Token"] = token;
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const data = await res.json().catch(() => ({ error: res.status + " " + res.statusText }));
    if (!res.ok || data.error) throw new Error(data.error || res.statusText);
    return data;
  }

  function say(text, error) {
    const s = $("status");
    s.textContent = text;
    s.className = error ? "error" : "";
  }

  function showSummary(s) {
    state.summary = s;
    $("standin").hidden = !s.standin;
    $("summary").textContent = `${s.source} · ${s.host} · model ${s.model} · threshold ${s.threshold} · ` +
      `reviewer ${s.reviewer}`;
    showCards(s);
  }

  async function load(page, keep) {
    const data = await api(`/api/page/${page}`);
    state.page = data.page;
    state.pages = data.pages;
    state.seqs = data.sequences;
    if (!keep) { state.cur = 0; state.pic = 0; state.selected.clear(); }
    state.cur = Math.min(state.cur, Math.max(0, state.seqs.length - 1));
    render();
  }

  // one picture's thumbnail (its URL versioned once a person's boxes changed it) and its label as shown
  function thumbImage(f) {
    const img = el("img");
    img.alt = f.f;
    img.loading = "lazy";
    img.src = `/thumb/${f.id}.jpg` + (f.v ? `?v=${f.v}` : "");
    return img;
  }

  function labelSpan(f) {
    return el("span", f.human ? "human" : "", f.label + (f.human ? ` ✓ ${f.human.by}` : ""));
  }

  function render() {
    const q = $("queue");
    q.replaceChildren();
    if (!state.seqs.length) showEmpty(q);
    state.seqs.forEach((seq, i) => {
      const box = el("section", "seq" + (i === state.cur ? " current" : "") + (seq.reviewed ? " reviewed" : ""));
      box.dataset.seq = seq.id;
      const h = el("h2", null, `#${seq.id} ${seq.station ? seq.station + " · " : ""}${seq.label}`);
      h.append(el("span", "machine", ` (DeepFaune: ${seq.machine.label} ${seq.machine.score.toFixed(2)})`));
      seq.reasons.forEach((r) => h.append(el("span", "reason", r)));
      box.append(h);
      const files = el("div", "files");
      seq.files.forEach((f, j) => {
        const fig = el("figure");
        if (i === state.cur && j === state.pic) fig.classList.add("pic");
        if (i === state.cur && state.selected.has(j)) fig.classList.add("selected");
        fig.dataset.file = f.f;
        fig.append(thumbImage(f));
        const cap = el("figcaption");
        cap.append(labelSpan(f));
        if (f.human || f.machine.key !== f.key) {  // what DeepFaune said of this picture alone
          cap.append(el("span", "machine", ` · DeepFaune: ${f.machine.label} ${f.machine.score.toFixed(2)}`));
        }
        cap.append(el("br"), el("span", "machine", `${f.f}${f.date ? " · " + f.date : ""}`));
        showRecorded(cap, f);
        fig.append(cap);
        files.append(fig);
      });
      box.append(files);
      q.append(box);
    });
    $("pageinfo").textContent = `page ${state.page + 1} of ${state.pages}`;
    drawAnimals();  // issue 32: every animal box with its own label, where the run classified each
    const current = q.children[state.cur];
    if (current) current.scrollIntoView({ block: "nearest" });
  }

  function targets() {
    const seq = state.seqs[state.cur];
    if (!seq) return [];
    const picked = state.selected.size ? [...state.selected].sort((a, b) => a - b) : seq.files.map((_, j) => j);
    return picked.map((j) => seq.files[j]).filter((f) => !f.failed).map((f) => f.f);
  }

  async function label(key) {
    const seq = state.seqs[state.cur];
    const files = targets();
    if (!seq || !files.length) return;
    try {
      const res = await api("/api/label", { files, key });
      const whole = state.selected.size === 0;
      state.selected.clear();
      showSummary(res.summary);
      await load(state.page, true);
      await showConflicts();
      if (whole && state.cur < state.seqs.length - 1) { state.cur += 1; state.pic = 0; render(); }
      // said last: whoever waits for this line finds the page already showing the change
      say(key === null ? `forgot the label of ${files.length} file(s)` :
          `${files.length} file(s) of #${seq.id}: ${labelName(key)}`);
    } catch (err) {
      say(err.message, true);
    }
  }

  function labelName(key) {
    const found = state.labels.find((l) => l.key === key);
    return found ? found.label : key;
  }

  function accept() {
    const seq = state.seqs[state.cur];
    if (!seq) return;
    const key = seq.machine.key;
    if (key === "undefined" || key.endsWith(" undefined") || key === "failed") {
      say("DeepFaune gave no label here: pick one (/ or e, h, v)", true);
      return;
    }
    label(key);
  }

  // -- the label picker: search as you type, in any language of the model card
  // (issue 33.5) the server finds the labels a text names (any language, scientific names, accents aside):
  // one rule, in Python; the page shows the latest answer and Enter waits for it
  const search = { asked: 0, found: [], pending: Promise.resolve() };

  function openPicker(forBatch) {
    state.pickFor = forBatch ? "batch" : null;
    $("picker").hidden = false;
    $("search").value = "";
    state.choice = 0;
    runSearch();
    $("search").focus();
  }

  function closePicker() {
    $("picker").hidden = true;
    $("search").blur();
    if (state.pickFor === "batch") $("b-pick").focus();
  }

  function runSearch() {
    const text = $("search").value;
    const asked = ++search.asked;
    search.pending = api("/api/search?q=" + encodeURIComponent(text)).then((found) => {
      if (asked !== search.asked) return;  // a later keystroke asked again
      search.found = found;
      state.choice = 0;
      filter();
    }).catch((err) => say(err.message, true));
    return search.pending;
  }

  function matches() {
    return search.found;
  }

  function filter() {
    const list = $("choices");
    list.replaceChildren();
    const found = matches();
    state.choice = Math.min(state.choice, Math.max(0, found.length - 1));
    found.forEach((l, i) => {
      const li = el("li", i === state.choice ? "active" : "", l.label + (l.name ? ` (${l.name})` : ""));
      li.dataset.key = l.key;
      list.append(li);
    });
    if (!found.length) list.append(el("li", "nomatch", `no match for “${$("search").value.trim()}”`));
  }

  function chosen(key) {  // a label picked: for the current sequence, or for the batch the filter selects
    if (state.pickFor === "similar") { closePicker(); state.pickFor = null; similarLabel(key); return; }
    const forBatch = state.pickFor === "batch";
    closePicker();
    state.pickFor = null;
    if (forBatch) batchLabel(key); else label(key);
  }

  function pickerKey(ev) {
    const found = matches();
    if (ev.key === "Escape") { closePicker(); state.pickFor = null; }
    else if (ev.key === "ArrowDown") { state.choice = Math.min(found.length - 1, state.choice + 1); filter(); }
    else if (ev.key === "ArrowUp") { state.choice = Math.max(0, state.choice - 1); filter(); }
    else if (ev.key === "Enter") {
      search.pending.then(() => {
        const l = matches()[state.choice];
        if (l) chosen(l.key); else say(`no match for “${$("search").value.trim()}”`, true);
      });
    } else { return; }
    ev.preventDefault();
  }

  function move(delta) {
    const next = state.cur + delta;
    if (next >= state.seqs.length && state.page < state.pages - 1) { load(state.page + 1); return; }
    if (next < 0 && state.page > 0) {
      load(state.page - 1).then(() => { state.cur = state.seqs.length - 1; render(); });
      return;
    }
    state.cur = Math.max(0, Math.min(state.seqs.length - 1, next));
    state.pic = 0;
    state.selected.clear();
    render();
  }

  async function exportAll() {
    say("writing the labels into the source's files…");
    try {
      const res = await api("/api/export", {});
      say("wrote " + res.written.join(", "));
    } catch (err) {
      say(err.message, true);
    }
  }

  function enlarge() {
    const seq = state.seqs[state.cur];
    const f = seq && seq.files[state.pic];
    if (!f) return;
    $("large").src = `/large/${f.id}.jpg`;
    $("large").alt = f.f;
    $("large-caption").textContent = `${f.f} · ${f.label}` + (f.date ? ` · ${f.date}` : "");
    $("viewer").hidden = false;
    openBoxes(f);
    animalsInView(f);
  }

  // == the empty queue (issue 33.5): why, and how to see everything, from the server ==
  function showEmpty(q) {
    const s = state.summary || {};
    const p = el("p", "empty", s.empty || "no sequence on this page");
    p.id = "empty";
    q.append(p);
  }

  // == what ecologists record (issue 33.1): count, sex, life stage, behaviour, individual, comment ==
  const FIELDS = ["count", "sex", "life_stage", "behaviour", "individual", "comment", "species_counts"];

  function recordedText(fields) {
    return FIELDS.filter((n) => fields && fields[n] !== undefined && fields[n] !== "")
      .map((n) => (n === "comment" ? `“${fields[n]}”` : n === "count" ? `count ${fields[n]}` :
        n === "species_counts" ? speciesText(fields[n]) : String(fields[n])))
      .join(" · ");
  }

  function showRecorded(cap, f) {
    if (!f.human) return;
    const text = recordedText(f.human.fields);
    if (text) cap.append(el("br"), el("span", "recorded", text));
    if (f.human.others && f.human.others.length) {  // two reviewers disagree: each label side by side
      const row = el("span", "conflict");
      [{ by: f.human.by, label: f.label, fields: f.human.fields }, ...f.human.others].forEach((h) => {
        const text = recordedText(h.fields);
        row.append(el("span", "by", `${h.by}: ${h.label}${text ? " (" + text + ")" : ""}`));
      });
      cap.append(el("br"), row);
    }
  }

  function openFields() {
    const seq = state.seqs[state.cur];
    const files = targets();
    if (!seq || !files.length) return;
    const shown = seq.files.filter((f) => files.includes(f.f));
    FIELDS.forEach((n) => {
      const values = new Set(shown.map((f) => (f.human && f.human.fields[n] !== undefined ? String(f.human.fields[n]) : "")));
      const input = $("fd-" + n);
      input.value = values.size === 1 ? [...values][0] : "";
      input.dataset.initial = input.value;
      if ("placeholder" in input && input.tagName === "INPUT") input.placeholder = values.size > 1 ? "(several)" : "";
    });
    $("fields-for").textContent = `${files.length} file(s) of #${seq.id}`;
    $("fields").hidden = false;
    $("fd-count").focus();
  }

  function closeFields() {
    $("fields").hidden = true;
    if (document.activeElement) document.activeElement.blur();
  }

  async function saveFields() {
    const seq = state.seqs[state.cur];
    const files = targets();
    const values = {};
    FIELDS.forEach((n) => {
      const input = $("fd-" + n);
      if (input.value !== input.dataset.initial) values[n] = input.value;
    });
    if (!seq || !files.length || !Object.keys(values).length) { closeFields(); return; }
    try {
      const res = await api("/api/fields", { files, values });
      closeFields();
      state.selected.clear();
      showSummary(res.summary);
      await load(state.page, true);
      showConflicts();
      say(`fields of ${files.length} file(s) of #${seq.id}: ` +
          Object.entries(values).map(([n, v]) => `${n.replace("_", " ")} ${v === "" ? "forgotten" : v}`).join(", "));
    } catch (err) {
      say(err.message, true);
    }
  }

  async function showConflicts() {
    let found;
    try { found = await api("/api/conflicts"); } catch (err) { say(err.message, true); return; }
    const box = $("conflicts");
    box.replaceChildren();
    box.hidden = !found.length;
    if (!found.length) return;
    box.append(el("h2", null, `${found.length} file(s) labelled differently by several reviewers ` +
                                "(the latest label is written; none is overwritten)"));
    const table = el("table");
    found.forEach((c) => {
      const tr = el("tr");
      tr.append(el("td", null, `#${c.seq}`), el("td", null, c.f));
      c.labels.forEach((h) => {
        const text = recordedText(h.fields);
        tr.append(el("td", "by", `${h.by}: ${h.label}${text ? " (" + text + ")" : ""}`));
      });
      table.append(tr);
    });
    box.append(table);
  }

  // == many at once (issue 33.2): a filter the server runs over every sequence, one label for all, one undo ==
  let previewTimer = null;

  function batchFilter() {
    const reviewed = $("b-reviewed").value;
    return { label: $("b-label").value, score_from: $("b-from").value, score_below: $("b-below").value,
             station: $("b-station").value, date_from: $("b-date-from").value, date_to: $("b-date-to").value,
             reviewed: reviewed === "" ? null : reviewed, queue: $("b-queue").checked };
  }

  async function openBatch() {
    $("batch").hidden = false;
    $("b-label").focus();
    if (!$("stations").children.length) {
      try {
        (await api("/api/stations")).forEach((s) => { const o = el("option"); o.value = s; $("stations").append(o); });
      } catch (err) { say(err.message, true); }
    }
    preview();
  }

  function closeBatch() {
    $("batch").hidden = true;
    if (document.activeElement) document.activeElement.blur();
  }

  async function preview() {
    try {
      const res = await api("/api/select", { filter: batchFilter() });
      $("b-count").className = "";
      $("b-count").textContent = `${res.sequences} sequence(s), ${res.files} file(s) match` +
        (res.outside_queue ? `, ${res.outside_queue} of them outside the queue` : "") +
        (res.files > res.max_files ? ` (at most ${res.max_files} files at once: narrow the filter)` : "");
    } catch (err) {
      $("b-count").className = "error";
      $("b-count").textContent = err.message;
    }
  }

  async function afterBatch(res, text) {
    showSummary(res.summary);
    await load(state.page, true);
    showConflicts();
    await preview();
    $("b-undo").disabled = !res.undo;
    say(text);  // said last: the page already shows the change
  }

  async function batchLabel(key) {
    try {
      const res = await api("/api/batch/label", { filter: batchFilter(), key });
      await afterBatch(res, res.files ? `${res.what}: ${res.sequences} sequence(s), ${res.files} file(s) ` +
                                        "labelled (U undoes the batch)" : "no sequence matches the filter");
    } catch (err) {
      say(err.message, true);
    }
  }

  async function batchAccept() {
    try {
      const res = await api("/api/batch/accept", { filter: batchFilter() });
      await afterBatch(res, (res.files ? `DeepFaune's label accepted: ${res.sequences} sequence(s), ${res.files} ` +
                                         "file(s) (U undoes the batch)" : "no sequence with a DeepFaune label matches") +
                            (res.skipped ? `; ${res.skipped} sequence(s) DeepFaune left undefined skipped` : ""));
    } catch (err) {
      say(err.message, true);
    }
  }

  async function undoBatch() {
    try {
      const res = await api("/api/undo", {});
      await afterBatch(res, `undid the batch (${res.what}): ${res.restored} file(s) as they were before it`);
    } catch (err) {
      say(err.message, true);
    }
  }

  function inPanel(ev) {  // keys typed in a form are the form's; Escape leaves it
    const form = ev.target && ev.target.closest && ev.target.closest("#batch, #fields");
    if (!form) return false;
    if (ev.key === "Escape") { ev.preventDefault(); if (form.id === "batch") closeBatch(); else closeFields(); }
    return true;
  }

  function wirePanels() {
    $("batch").addEventListener("submit", (ev) => { ev.preventDefault(); preview(); });
    $("batch").addEventListener("input", () => { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 150); });
    $("b-pick").addEventListener("click", () => openPicker(true));
    $("b-accept").addEventListener("click", batchAccept);
    $("b-undo").addEventListener("click", undoBatch);
    $("b-close").addEventListener("click", closeBatch);
    $("open-batch").addEventListener("click", openBatch);
    $("fields").addEventListener("submit", (ev) => { ev.preventDefault(); saveFields(); });
    $("fd-cancel").addEventListener("click", closeFields);
  }

  function onKey(ev) {
    if (!$("picker").hidden) { pickerKey(ev); return; }
    if (!$("viewer").hidden) {  // the arrows go through the sequence's pictures enlarged; any other key closes
      if (boxKey(ev)) { ev.preventDefault(); return; }
      const seq = state.seqs[state.cur];
      if (seq && (ev.key === "ArrowRight" || ev.key === "ArrowLeft")) {
        state.pic = Math.max(0, Math.min(seq.files.length - 1, state.pic + (ev.key === "ArrowRight" ? 1 : -1)));
        render();
        enlarge();
      } else {
        $("viewer").hidden = true;
        $("clip").pause();
      }
      ev.preventDefault();
      return;
    }
    if (inPanel(ev)) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const bySimilar = similarKey(ev);
    if (bySimilar) { if (bySimilar === true) ev.preventDefault(); return; }
    const seq = state.seqs[state.cur];
    switch (ev.key) {
      case "j": case "ArrowDown": move(1); break;
      case "k": case "ArrowUp": move(-1); break;
      case "ArrowRight": if (seq) { state.pic = Math.min(seq.files.length - 1, state.pic + 1); render(); } break;
      case "ArrowLeft": state.pic = Math.max(0, state.pic - 1); render(); break;
      case "o": case " ": enlarge(); break;
      case "x":
        if (state.selected.has(state.pic)) state.selected.delete(state.pic); else state.selected.add(state.pic);
        render();
        break;
      case "Enter": case "a": accept(); break;
      case "e": label("empty"); break;
      case "h": label("human"); break;
      case "v": label("vehicle"); break;
      case "u": label(null); break;
      case "/": case "l": openPicker(); break;
      case "n": if (state.page < state.pages - 1) load(state.page + 1); break;
      case "p": if (state.page > 0) load(state.page - 1); break;
      case "W": exportAll(); break;
      case "b": openBatch(); break;
      case "U": undoBatch(); break;
      case "f": openFields(); break;
      case "s": openSimilar(); break;
      default: return;
    }
    ev.preventDefault();
  }

  // -- the box editor (issue 33.3) and the video clip (33.6), in the enlarged view: a person's boxes replace the
  // detector's for the file in every output. Boxes are fractions of the picture: {c, x, y, w, h}.
  const boxes = { file: null, list: [], saved: [], sel: -1, drag: null, dirty: false };
  const BOX_KEYS = { a: "animal", p: "person", c: "vehicle" };
  const STEP = 0.01;  // an arrow moves a box by 1% of the picture

  function openBoxes(f) {
    boxes.file = f;
    boxes.saved = (f.boxes || []).map((b) => ({ c: b.c, x: b.x, y: b.y, w: b.w, h: b.h }));
    boxes.list = boxes.saved.map((b) => ({ ...b }));
    boxes.sel = -1;
    boxes.dirty = false;
    const img = $("large"), clip = $("clip");
    if (f.video) {  // the clip plays; its boxes belong to the key frame, drawn at that time only
      img.hidden = true;
      clip.hidden = false;
      clip.src = `/media/${f.id}`;
      clip.onloadedmetadata = () => { if (f.key_time !== null) clip.currentTime = f.key_time; };
      clip.ontimeupdate = drawBoxes;
    } else {
      clip.pause();
      clip.removeAttribute("src");
      clip.hidden = true;
      img.hidden = false;
      img.src = `/plain/${f.id}.jpg` + (f.v ? `?v=${f.v}` : "");
    }
    drawBoxes();
  }

  function atKeyFrame() {
    const f = boxes.file, clip = $("clip");
    if (!f || !f.video) return true;
    return f.key_time !== null && Math.abs(clip.currentTime - f.key_time) < 0.25;
  }

  function drawBoxes() {
    const layer = $("boxlayer");
    layer.replaceChildren();
    if (!boxes.file || !atKeyFrame()) return;
    boxes.list.forEach((b, i) => {
      const d = el("div", `ebox ${b.c}` + (i === boxes.sel ? " sel" : ""));
      d.style.left = `${100 * b.x}%`;
      d.style.top = `${100 * b.y}%`;
      d.style.width = `${100 * b.w}%`;
      d.style.height = `${100 * b.h}%`;
      d.dataset.box = String(i);
      d.title = b.c;
      layer.append(d);
    });
    const f = boxes.file;
    $("boxhelp").dataset.state = boxes.dirty ? "unsaved" : (f.drawn_by ? "drawn" : "detector");
    $("large-caption").textContent = `${f.f} · ${f.label}` + (f.date ? ` · ${f.date}` : "") +
      ` · ${boxes.list.length} box(es)` + (boxes.dirty ? " (not saved: s saves, Escape cancels)" :
        f.drawn_by ? ` drawn by ${f.drawn_by}` : " by the detector");
  }

  function clamp01(v) { return Math.max(0, Math.min(1, v)); }

  function place(b) {  // a box kept inside the picture, never a speck
    b.w = Math.max(0.002, Math.min(1, b.w));
    b.h = Math.max(0.002, Math.min(1, b.h));
    b.x = clamp01(Math.min(b.x, 1 - b.w));
    b.y = clamp01(Math.min(b.y, 1 - b.h));
  }

  function edited() { boxes.dirty = true; drawBoxes(); }

  function boxKey(ev) {  // true: the key was the editor's
    if (!boxes.file || ev.ctrlKey || ev.metaKey || ev.altKey) return false;
    const b = boxes.list[boxes.sel];
    if (ev.key === "Tab") {
      if (!boxes.list.length) return true;
      boxes.sel = ev.shiftKey ? (boxes.sel <= 0 ? boxes.list.length - 1 : boxes.sel - 1)
        : (boxes.sel + 1) % boxes.list.length;
      drawBoxes();
      return true;
    }
    if (ev.key === "Escape" && (boxes.dirty || boxes.sel >= 0 || boxes.drag)) {
      boxes.list = boxes.saved.map((x) => ({ ...x }));
      boxes.sel = -1;
      boxes.drag = null;
      boxes.dirty = false;
      drawBoxes();
      say("box changes cancelled");
      return true;
    }
    if (ev.key === "s") { saveBoxes(boxes.list); return true; }
    if (ev.key === "r") { saveBoxes(null); return true; }
    if (!b) return false;
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (arrows[ev.key]) {
      const [dx, dy] = arrows[ev.key];
      if (ev.shiftKey) { b.w += dx * STEP; b.h += dy * STEP; } else { b.x += dx * STEP; b.y += dy * STEP; }
      place(b);
      edited();
      return true;
    }
    if (ev.key === "Delete" || ev.key === "Backspace") {
      boxes.list.splice(boxes.sel, 1);
      boxes.sel = Math.min(boxes.sel, boxes.list.length - 1);
      edited();
      return true;
    }
    if (BOX_KEYS[ev.key]) { b.c = BOX_KEYS[ev.key]; edited(); return true; }
    return false;
  }

  function pointAt(ev) {
    const r = $("boxlayer").getBoundingClientRect();
    return { x: clamp01((ev.clientX - r.left) / r.width), y: clamp01((ev.clientY - r.top) / r.height) };
  }

  function boxDown(ev) {
    if (!boxes.file || ev.button !== 0 || !atKeyFrame()) return;
    const p = pointAt(ev);
    const hit = ev.target.dataset && ev.target.dataset.box !== undefined ? Number(ev.target.dataset.box) : -1;
    if (hit >= 0) {  // select it, and move it while the button is held
      boxes.sel = hit;
      const b = boxes.list[hit];
      boxes.drag = { kind: "move", from: p, x: b.x, y: b.y };
    } else {
      boxes.list.push({ c: "animal", x: p.x, y: p.y, w: 0, h: 0 });
      boxes.sel = boxes.list.length - 1;
      boxes.drag = { kind: "draw", from: p };
    }
    drawBoxes();
    ev.preventDefault();
  }

  function boxMove(ev) {
    const drag = boxes.drag;
    if (!drag) return;
    const p = pointAt(ev), b = boxes.list[boxes.sel];
    if (drag.kind === "move") {
      b.x = drag.x + p.x - drag.from.x;
      b.y = drag.y + p.y - drag.from.y;
      place(b);
    } else {
      b.x = Math.min(p.x, drag.from.x); b.y = Math.min(p.y, drag.from.y);
      b.w = Math.abs(p.x - drag.from.x); b.h = Math.abs(p.y - drag.from.y);
    }
    edited();
  }

  function boxUp() {
    const drag = boxes.drag;
    if (!drag) return;
    boxes.drag = null;
    const b = boxes.list[boxes.sel];
    if (drag.kind === "draw" && (b.w < 0.005 || b.h < 0.005)) {  // a click, not a drag: no box
      boxes.list.splice(boxes.sel, 1);
      boxes.sel = -1;
      drawBoxes();
      return;
    }
    edited();
  }

  async function saveBoxes(list) {
    const f = boxes.file;
    try {
      const res = await api("/api/boxes", { file: f.f, boxes: list });
      showSummary(res.summary);
      const seq = state.seqs[state.cur];
      const j = seq ? seq.files.findIndex((x) => x.f === f.f) : -1;
      if (j >= 0) seq.files[j] = res.file;
      render();
      openBoxes(res.file);
      animalsInView(res.file);  // issue 32: the labels go with the detector's boxes
      say(list === null ? `${f.f}: the detector's boxes again` : `${f.f}: ${list.length} box(es) saved`);
    } catch (err) {
      say(err.message, true);
    }
  }

  // == every animal in the picture (issue 32): each animal box with its own label and score, where the run
  // classified every box (--every-animal); "too small" boxes marked, DeepFaune's own box distinct. What each box
  // says comes from the server (`animals`, its `df` flag, the "too small" label): no rule of its own here. ==
  const TOO_SMALL = "too small";  // the label the server gives a box too small to classify
  const THUMB = { w: 164, h: 123 };  // a thumbnail's frame (app.css): the picture letterboxed inside it

  function animalLayer(list) {
    const out = el("div", "animals");
    out.dataset.boxes = String(list.length);
    list.forEach((a) => {
      const small = a.k === TOO_SMALL;
      const box = el("div", "abox" + (small ? " small" : "") + (a.df ? " deepfaune" : "") + (a.b[1] < 0.15 ? " below" : ""));
      box.style.left = `${100 * a.b[0]}%`;
      box.style.top = `${100 * a.b[1]}%`;
      box.style.width = `${100 * a.b[2]}%`;
      box.style.height = `${100 * a.b[3]}%`;
      const text = small ? a.l : `${a.l} ${a.s.toFixed(2)}`;
      box.dataset.label = a.l;
      box.title = text + (a.df ? " (DeepFaune's box for the image)" : "");
      box.append(el("span", "alabel", text));
      out.append(box);
    });
    return out;
  }

  function drawAnimals() {
    document.querySelectorAll("#queue figure[data-file]").forEach((fig) => {
      const f = findFile(fig.dataset.file);
      if (!f || !f.animals || !f.animals.length || !f.ar) return;
      let w = THUMB.w, h = THUMB.h;
      if (f.ar > w / h) h = w / f.ar; else w = h * f.ar;
      const layer = animalLayer(f.animals);
      layer.style.left = `${(THUMB.w - w) / 2 + 2}px`;  // inside the figure's 2px border
      layer.style.top = `${(THUMB.h - h) / 2 + 2}px`;
      layer.style.width = `${w}px`;
      layer.style.height = `${h}px`;
      fig.classList.add("has-animals");
      fig.append(layer);
    });
  }

  function findFile(rel) {
    for (const seq of state.seqs) {
      const f = seq.files.find((x) => x.f === rel);
      if (f) return f;
    }
    return null;
  }

  function animalsInView(f) {  // over the enlarged picture while its boxes are the detector's
    const old = $("frame").querySelector(".animals");
    if (old) old.remove();
    if (!f.animals || !f.animals.length || f.video || f.drawn_by) return;
    $("frame").insertBefore(animalLayer(f.animals), $("boxlayer"));
  }

  // == repeats (issue 32): the places --drop-repeats set aside, per station (one picture with the place's box, how
  // many images), each to Confirm (it stays aside) or Restore (its boxes count again at the next write back) ==
  const DECIDED = { confirm: "confirmed: stays aside", restore: "restored: counts again at write back" };

  async function showRepeats() {
    let data;
    try { data = await api("/api/repeats"); } catch (err) { say(err.message, true); return; }
    let section = $("repeats");
    if (!data.on || !data.groups.length) { if (section) section.remove(); return; }
    if (!section) {
      section = el("details");
      section.id = "repeats";
      section.open = true;
      $("queue").parentNode.insertBefore(section, $("queue"));
    }
    section.replaceChildren();
    const undecided = data.groups.filter((g) => !g.decision).length;
    section.append(el("summary", null, `Set aside as repeats: ${data.groups.length} place(s), ${undecided} not decided yet`),
      el("p", "muted", "Animal boxes at the same place in many images of one station (a branch, a rock, a post: overlap " +
        `at least ${data.iou} in at least ${data.min_images} images) no longer count. Confirm keeps them aside; ` +
        "Restore gives them back to the animals (DeepFaune classifies them) when you write back."));
    const stations = [...new Set(data.groups.map((g) => g.station))];
    stations.forEach((st) => {
      const groups = data.groups.filter((g) => g.station === st);
      section.append(el("h3", null, `station ${st || "(top folder)"} — ${groups.length} place(s)`));
      const strip = el("div", "files");
      groups.forEach((g) => strip.append(repeatCard(g)));
      section.append(strip);
    });
  }

  function repeatCard(g) {
    const fig = el("figure", "repeat" + (g.decision ? " " + g.decision : ""));
    fig.dataset.place = g.id;
    fig.dataset.file = g.f;
    fig.dataset.n = String(g.n);
    const frame = el("div", "rframe");
    if (g.fid) {
      const img = el("img");
      img.alt = g.f;
      img.loading = "lazy";
      img.src = `/plain/${g.fid}.jpg`;
      frame.append(img);
      let w = THUMB.w, h = THUMB.h;
      if (g.ar > w / h) h = w / g.ar; else w = h * g.ar;
      const layer = el("div", "animals");
      layer.style.left = `${(THUMB.w - w) / 2}px`;
      layer.style.top = `${(THUMB.h - h) / 2}px`;
      layer.style.width = `${w}px`;
      layer.style.height = `${h}px`;
      const box = el("div", "abox rbox");
      box.style.left = `${100 * g.b[0]}%`;
      box.style.top = `${100 * g.b[1]}%`;
      box.style.width = `${100 * (g.b[2] - g.b[0])}%`;
      box.style.height = `${100 * (g.b[3] - g.b[1])}%`;
      layer.append(box);
      frame.append(layer);
    }
    fig.append(frame);
    const cap = el("figcaption");
    cap.append(el("b", null, `${g.n} image(s)`), el("span", "machine", ` · ${g.f}`));
    cap.append(el("br"), el("span", g.decision ? "human" : "machine",
      g.decision ? `${DECIDED[g.decision]} (${g.by})` : "not decided yet"));
    const confirm = el("button", "r-confirm", "Confirm");
    confirm.type = "button";
    confirm.title = "a branch, a rock: keep these boxes aside";
    confirm.addEventListener("click", () => decideRepeat(g, g.mine === "confirm" ? null : "confirm"));
    const restore = el("button", "r-restore", "Restore");
    restore.type = "button";
    restore.title = "an animal after all: its boxes count again at write back";
    restore.addEventListener("click", () => decideRepeat(g, g.mine === "restore" ? null : "restore"));
    if (g.mine) (g.mine === "confirm" ? confirm : restore).classList.add("on");
    cap.append(el("br"), confirm, restore);
    fig.append(cap);
    return fig;
  }

  async function decideRepeat(g, decision) {
    try {
      await api("/api/repeat", { place: g.id, decision });
      await showRepeats();
      say(`station ${g.station || "(top folder)"}, ${g.n} image(s): ` + (decision ? DECIDED[decision] : "decision forgotten"));
    } catch (err) {
      say(err.message, true);
    }
  }

  // == counts per species (issue 33.1): "fox:2;badger:1" as kept, shown "fox 2 + badger 1"
  function speciesText(text) {
    return String(text).split(";").map((part) => part.replace(/:(\d+)$/, " $1")).join(" + ");
  }

  // == the head's cards (issue 33.8): the report's cards (report.css .cards/.card/.num/.lbl) for the review's
  // progress, so the two pages read alike; the numbers come from /api/summary only.
  function card(id, num, text, cls) {
    const c = el("div", "card" + (cls ? " " + cls : ""));
    c.dataset.card = id;
    c.append(el("div", "num", String(num)), el("div", "lbl", text));
    return c;
  }

  function showCards(s) {
    const cards = [card("queue", s.queue, `of ${s.sequences} sequences to review`, s.queue > s.reviewed ? "review" : ""),
                   card("reviewed", s.reviewed, `of ${s.queue} reviewed`)];
    Object.entries(s.by_reviewer || {}).forEach(([who, n]) => cards.push(card("by", n, `of ${s.queue} done by ${who}`)));
    cards.push(card("conflicts", s.conflicts || 0, "files labelled differently by several reviewers",
                    s.conflicts ? "warn" : ""));
    if (s.missing) cards.push(card("missing", s.missing, "files without stored results (not shown)", "warn"));
    $("cards").replaceChildren(...cards);
  }

  $("boxlayer").addEventListener("mousedown", boxDown);
  document.addEventListener("mousemove", boxMove);
  document.addEventListener("mouseup", boxUp);

  // == pictures like this one (issue 34.5): the review's pictures nearest the current one by cosine on the
  // classifier's features, in place of the queue; all selected at first, one label for the selected, one undo ==
  const similar = { open: false, files: [], chosen: new Set(), at: 0 };

  async function openSimilar() {
    const seq = state.seqs[state.cur];
    const f = seq && seq.files[state.pic];
    if (!f) return;
    try {
      const res = await api(`/api/similar/${f.id}?n=24`);
      similar.files = [{ ...f, seq: seq.id, cosine: 1 }, ...res.similar];
      similar.chosen = new Set(similar.files.filter((x) => !x.failed).map((x) => x.f));
      similar.at = 0;
      similar.open = true;
      $("queue").hidden = true;
      $("similar").hidden = false;
      $("similar-for").textContent = f.f;
      renderSimilar();
      say(`${res.similar.length} picture(s) like ${f.f}`);
    } catch (err) {
      say(err.message, true);
    }
  }

  function closeSimilar() {
    similar.open = false;
    $("similar").hidden = true;
    $("queue").hidden = false;
  }

  function renderSimilar() {
    const grid = $("similar-files");
    grid.replaceChildren();
    similar.files.forEach((f, i) => {
      const fig = el("figure", (i === similar.at ? "pic" : "") + (similar.chosen.has(f.f) ? " selected" : ""));
      fig.dataset.file = f.f;
      fig.dataset.index = String(i);
      fig.append(thumbImage(f));
      const cap = el("figcaption");
      cap.append(labelSpan(f));
      cap.append(el("span", "machine", i ? ` · cosine ${f.cosine.toFixed(2)}` : " · this picture"));
      cap.append(el("br"), el("span", "machine", `#${f.seq} · ${f.f}`));
      fig.append(cap);
      grid.append(fig);
    });
    $("similar-count").textContent = `${similar.chosen.size} of ${similar.files.length} selected`;
  }

  function toggleSimilar(i) {
    const f = similar.files[i];
    if (!f || f.failed) return;
    if (similar.chosen.has(f.f)) similar.chosen.delete(f.f); else similar.chosen.add(f.f);
    renderSimilar();
  }

  async function similarLabel(key) {
    const files = similar.files.filter((f) => similar.chosen.has(f.f)).map((f) => f.f);
    if (!files.length) { say("no picture selected", true); return; }
    try {
      const res = await api("/api/similar/label", { files, key });
      showSummary(res.summary);
      closeSimilar();
      await load(state.page, true);
      showConflicts();
      $("b-undo").disabled = !res.undo;
      say(`${res.what}: ${res.files} similar picture(s) of ${res.sequences} sequence(s) labelled (U undoes them)`);
    } catch (err) {
      say(err.message, true);
    }
  }

  function similarKey(ev) {  // true: the key was the similar pictures' (while they are shown)
    if (!similar.open) return false;
    const n = similar.files.length;
    switch (ev.key) {
      case "Escape": case "s": closeSimilar(); break;
      case "ArrowRight": case "j": similar.at = Math.min(n - 1, similar.at + 1); renderSimilar(); break;
      case "ArrowLeft": case "k": similar.at = Math.max(0, similar.at - 1); renderSimilar(); break;
      case "x": toggleSimilar(similar.at); break;
      case "A":
        similar.chosen = similar.chosen.size ? new Set() : new Set(similar.files.filter((f) => !f.failed).map((f) => f.f));
        renderSimilar();
        break;
      case "/": case "l": openPicker(); state.pickFor = "similar"; break;
      case "e": similarLabel("empty"); break;
      case "U": closeSimilar(); return false;  // the last batch undone, as in the queue (which shows it)
      default: return ev.key.length > 1 ? "pass" : true;  // Tab, Enter on a button: theirs; no queue key meanwhile
    }
    return true;
  }

  api("/api/summary").then((s) => {  // --order learn: said once (which sequences lack features does not change)
    if (s.order !== "learn") return;
    $("order-note").hidden = false;
    $("order-note").textContent = "Ordered so each label teaches the most (--order learn): DeepFaune least sure " +
      "first, then the least like what people labelled" +
      (s.without_features ? `; ${s.without_features} sequence(s) without stored features come last` : "");
  }).catch((err) => say(err.message, true));

  $("similar-files").addEventListener("click", (ev) => {
    const fig = ev.target.closest && ev.target.closest("figure");
    if (fig) { similar.at = Number(fig.dataset.index); toggleSimilar(similar.at); }
  });
  $("similar-label").addEventListener("click", () => { openPicker(); state.pickFor = "similar"; });
  $("similar-close").addEventListener("click", closeSimilar);

  document.addEventListener("keydown", onKey);
  $("search").addEventListener("input", () => { runSearch(); });
  $("export").addEventListener("click", exportAll);
  $("next").addEventListener("click", () => { if (state.page < state.pages - 1) load(state.page + 1); });
  $("prev").addEventListener("click", () => { if (state.page > 0) load(state.page - 1); });
  $("choices").addEventListener("click", (ev) => {
    const key = ev.target.dataset && ev.target.dataset.key;
    if (key) chosen(key);
  });
  wirePanels();

  Promise.all([api("/api/summary"), api("/api/labels")]).then(([summary, labels]) => {
    showSummary(summary);
    state.labels = labels;
    document.body.dataset.ready = "1";
    showConflicts();
    showRepeats();
    return load(0);
  }).then(() => { document.body.dataset.loaded = "1"; }).catch((err) => say(err.message, true));
})();
