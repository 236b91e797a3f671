// charm review: the culling desk. Plain JavaScript, no build step, nothing from the network but
// this desk's own API. Every request carries the run's token (X-Charm-Token header; image URLs
// carry it as ?token= because <img> cannot send headers).
"use strict";

(() => {
  const TOKEN = document.querySelector('meta[name="charm-token"]').content;
  const KEY = "charm-review:" + TOKEN.slice(0, 12); // this run's state survives a reload, not a new run
  const $ = (sel) => document.querySelector(sel);

  const state = {
    info: null,
    photos: [],        // as the API lists them, best first
    order: [],         // ids in the order of the current view
    byId: new Map(),
    current: null,     // id
    view: "ranked",    // or "groups", or "taste" (when the desk runs with a learned taste)
    loupe: false,
    explain: false,
    zoom: false,
    undo: [],          // [{id, field, before}]
    filters: {},
  };

  function save() {
    sessionStorage.setItem(KEY, JSON.stringify({
      current: state.current, view: state.view, undo: state.undo, filters: state.filters, loupe: state.loupe,
    }));
  }

  function restore() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(KEY) || "{}");
      Object.assign(state, {
        current: saved.current ?? null, view: saved.view || "ranked", undo: saved.undo || [],
        filters: saved.filters || {}, loupe: !!saved.loupe,
      });
    } catch (e) { /* a broken entry is simply forgotten */ }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ "X-Charm-Token": TOKEN }, options.body ? { "Content-Type": "application/json" } : {});
    const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
    const data = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  const picture = (id, kind) => `/api/photos/${id}/${kind}?token=${encodeURIComponent(TOKEN)}`;

  function status(text, error = false) {
    const bar = $("#status");
    bar.textContent = text;
    bar.classList.toggle("error", error);
  }

  // -- rendering ---------------------------------------------------------------------------------

  function starsText(rating) {
    if (rating === -1) return "✕ rejected";
    return rating > 0 ? "★".repeat(rating) : "";
  }

  function fmt(x, digits = 3) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }
  function taken(p) { return (p.date_taken || "").slice(0, 16).replace("T", " "); }

  function chip(label) {
    if (!label) return null;
    const span = document.createElement("span");
    const known = (state.info && state.info.labels || []).includes(label);
    span.className = "chip " + (known ? label : "other");
    span.title = label;
    return span;
  }

  function fillCaption(fig, p) {
    const cap = fig.querySelector("figcaption");
    cap.replaceChildren();
    const top = document.createElement("div");
    top.className = "row";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = fmt(p.score);
    const pct = document.createElement("span");
    pct.className = "dim";
    pct.textContent = p.percentile === null ? "" : "p" + Math.round(p.percentile) + " · #" + p.rank;
    top.append(score, pct);
    if (p.taste !== null && p.taste !== undefined) {
      const taste = document.createElement("span");
      taste.className = "taste";
      taste.title = "your taste (predicted stars)";
      taste.textContent = "♥ " + fmt(p.taste, 1);
      top.append(taste);
    }
    const stars = document.createElement("div");
    stars.className = "stars" + (p.rating === -1 ? " reject" : "");
    stars.textContent = starsText(p.rating);
    const c = chip(p.label);
    if (c) { stars.append(c, document.createTextNode(" " + p.label)); }
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = p.name;
    name.title = p.path;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = [taken(p), p.camera].filter(Boolean).join(" · ") || " ";
    cap.append(top, stars, name, meta);
    if (p.flags && p.flags.length) {  // one badge per technical flag, its reason on hover
      const badges = document.createElement("div");
      badges.className = "badges";
      p.flags.forEach((f, i) => {
        const b = document.createElement("span");
        b.className = "badge";
        b.dataset.flag = f;
        b.textContent = f;
        b.title = (p.flag_reasons || [])[i] || f;
        badges.append(b);
      });
      cap.append(badges);
    }
    fig.classList.toggle("flagged", !!(p.flags && p.flags.length));
    fig.classList.toggle("rejected", p.rating === -1);
    fig.dataset.rating = p.rating === null ? "" : String(p.rating);
    fig.dataset.label = p.label || "";
  }

  function card(p) {
    const fig = document.createElement("figure");
    fig.className = "card" + (p.best ? " best" : "");
    fig.dataset.id = p.id;
    const frame = document.createElement("div");
    frame.className = "frame";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = p.name;
    img.src = picture(p.id, "thumb");
    img.addEventListener("error", () => { // changed since scored, unreadable: say so, keep the card
      const none = document.createElement("div");
      none.className = "noimg";
      none.textContent = "no preview";
      img.replaceWith(none);
    }, { once: true });
    frame.append(img);
    fig.append(frame, document.createElement("figcaption"));
    fillCaption(fig, p);
    fig.addEventListener("click", () => select(p.id));
    fig.addEventListener("dblclick", () => { select(p.id); openLoupe(); });
    return fig;
  }

  function groupsInOrder() {
    const groups = new Map();
    for (const p of state.photos) {
      if (!groups.has(p.group)) groups.set(p.group, []);
      groups.get(p.group).push(p);
    }
    const list = [...groups.values()].map((members) => members.sort((a, b) => a.group_pos - b.group_pos));
    // best group first (its best member's rank); the photos list is already best first
    const bestRank = (members) => Math.min(...members.map((m) => m.rank));
    return list.sort((a, b) => bestRank(a) - bestRank(b));
  }

  // Best liked first; photos the taste cannot judge (scored before its features were kept) last,
  // in score order, as the API lists them.
  function byTaste(photos) {
    const value = (p) => (p.taste === null || p.taste === undefined ? -Infinity : p.taste);
    return [...photos].sort((a, b) => value(b) - value(a) || a.rank - b.rank);
  }

  function render() {
    const grid = $("#grid");
    grid.replaceChildren();
    document.querySelectorAll(".views button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === state.view)));
    if (!state.photos.length) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = "No photos match these filters.";
      grid.append(empty);
      state.order = [];
      return;
    }
    if (state.view === "groups") {
      state.order = [];
      for (const members of groupsInOrder()) {
        const section = document.createElement("section");
        section.className = "group";
        const h = document.createElement("h2");
        const size = members[0].group_size;
        h.textContent = size > 1 ? `Burst ${members[0].group} · ${size} frames` : `Single photo`;
        if (members.length < size) h.textContent += ` (${members.length} shown)`;
        const cards = document.createElement("div");
        cards.className = "cards";
        for (const p of members) { cards.append(card(p)); state.order.push(p.id); }
        section.append(h, cards);
        grid.append(section);
      }
    } else {
      const cards = document.createElement("div");
      cards.className = "cards";
      const shown = state.view === "taste" ? byTaste(state.photos) : state.photos;
      for (const p of shown) cards.append(card(p));
      state.order = shown.map((p) => p.id);
      grid.append(cards);
    }
    if (!state.byId.has(state.current)) state.current = state.order[0];
    select(state.current, false);
  }

  function cardOf(id) { return document.querySelector(`.card[data-id="${id}"]`); }

  function select(id, scroll = true) {
    if (id === undefined || id === null || !state.byId.has(id)) return;
    const before = cardOf(state.current);
    if (before) before.classList.remove("current");
    state.current = id;
    const now = cardOf(id);
    if (now) {
      now.classList.add("current");
      if (scroll) now.scrollIntoView({ block: "nearest" });
    }
    document.body.dataset.current = String(id);
    if (state.loupe) showLoupe();
    save();
  }

  // -- large view --------------------------------------------------------------------------------

  function openLoupe() { state.loupe = true; showLoupe(); save(); }
  function closeLoupe() {
    state.loupe = false; state.zoom = false; state.explain = false;
    $("#loupe").hidden = true;
    document.body.dataset.loupe = "";
    save();
  }

  function showLoupe() {
    const p = state.byId.get(state.current);
    if (!p) return;
    $("#loupe").hidden = false;
    document.body.dataset.loupe = "open";
    const kind = state.zoom ? "full" : state.explain ? "explain" : "preview";
    const big = $("#big");
    big.alt = p.name;
    big.dataset.kind = kind;
    big.onerror = () => {
      if (kind === "explain") { state.explain = false; status("No kept cells to show for this photo.", true); showLoupe(); }
      else status("Cannot show " + p.name, true);
    };
    big.onload = () => {
      if (state.zoom) { const st = $("#stage"); st.scrollLeft = (big.width - st.clientWidth) / 2; st.scrollTop = (big.height - st.clientHeight) / 2; }
    };
    const src = picture(p.id, kind);
    if (big.getAttribute("src") !== src) big.src = src;
    prefetchNeighbours(p.id);
    $("#stage").classList.toggle("zoom", state.zoom);
    const info = $("#info");
    info.replaceChildren();
    const h = document.createElement("h2");
    h.textContent = p.name;
    const flags = document.createElement("div");
    flags.className = "flags";
    flags.textContent = [starsText(p.rating), p.label ? "label " + p.label : "", p.best ? "best of burst" : "",
      state.explain ? "kept cells shown" : "", state.zoom ? "100 %" : ""].filter(Boolean).join(" · ");
    const dl = document.createElement("dl");
    const rows = [
      ["score", fmt(p.score, 4)], ["library", p.percentile === null ? "–" : "p" + p.percentile.toFixed(1)],
      ["rank", `${p.rank} of ${state.info ? state.info.photos : "?"}`],
      ["burst", p.group_size > 1 ? `${p.group} · frame ${p.group_pos + 1} of ${p.group_size}` : "single"],
      ["taken", taken(p) || "–"], ["camera", p.camera || "–"], ["lens", p.lens || "–"],
      ["size", p.width && p.height ? `${p.width} × ${p.height}` : "–"], ["folder", p.folder],
    ];
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      dl.append(dt, dd);
    }
    const hint = document.createElement("p");
    hint.className = "dim";
    hint.textContent = "Esc grid · E kept cells · Z 100 % · G next frame of burst";
    const reasons = document.createElement("ul");
    reasons.className = "reasons";
    for (const r of p.flag_reasons || []) reasons.append(Object.assign(document.createElement("li"), { textContent: r }));
    info.append(h, flags, reasons, dl, hint);
  }

  // The previews either side of the large view load while you look, so the next key is instant.
  const prefetched = new Set();
  function prefetchNeighbours(id) {
    const i = state.order.indexOf(id);
    for (const j of [i + 1, i - 1]) {
      const next = state.order[j];
      if (next === undefined || prefetched.has(next)) continue;
      prefetched.add(next);
      new Image().src = picture(next, "preview");
    }
  }

  // -- moving ------------------------------------------------------------------------------------

  function move(step) {
    const i = state.order.indexOf(state.current);
    const j = Math.max(0, Math.min(state.order.length - 1, (i < 0 ? 0 : i) + step));
    if (state.zoom || state.explain) { state.zoom = false; state.explain = false; }
    select(state.order[j]);
  }

  function columns() {
    const cards = [...document.querySelectorAll(".card")];
    if (!cards.length) return 1;
    const top = cards[0].offsetTop;
    const n = cards.findIndex((c) => c.offsetTop !== top);
    return n < 0 ? cards.length : n;
  }

  function nextInGroup(step) {
    const p = state.byId.get(state.current);
    if (!p) return;
    const members = state.photos.filter((q) => q.group === p.group).sort((a, b) => a.group_pos - b.group_pos);
    if (members.length < 2) { status("This photo is not part of a burst."); return; }
    const i = members.findIndex((q) => q.id === p.id);
    select(members[(i + step + members.length) % members.length].id);
  }

  // -- deciding ----------------------------------------------------------------------------------

  async function decide(id, field, value, remember = true) {
    const p = state.byId.get(id);
    if (!p) return;
    if (field === "rating" && value === null) value = 0; // undoing a first rating: XMP 0 = no rating
    const before = p[field];
    if (before === value) { status(field === "rating" ? "Already " + (starsText(value) || "unrated") + "." : "Unchanged."); return; }
    try {
      const result = await api(`/api/photos/${id}/${field}`, { method: "POST", body: JSON.stringify({ [field]: value }) });
      p.rating = result.rating;
      p.label = result.label;
      if (remember) state.undo.push({ id, field, before });
      if (state.undo.length > 500) state.undo.shift();
      const fig = cardOf(id);
      if (fig) fillCaption(fig, p);
      if (state.loupe && state.current === id) showLoupe();
      const what = field === "rating" ? (starsText(p.rating) || "rating cleared") : (p.label ? "label " + p.label : "label removed");
      status(`${p.name}: ${what} → ${result.sidecar}${remember ? "" : " (undone)"}`);
      save();
    } catch (e) {
      status(`${p.name}: ${e.message}`, true);
    }
  }

  // Decisions run one after another in key order: "5" then "U" must undo the 5, even when the
  // first request is still on its way.
  let queue = Promise.resolve();
  let pending = 0;
  function enqueue(task) {
    pending += 1;
    document.body.dataset.pending = String(pending);
    const done = () => { pending -= 1; document.body.dataset.pending = String(pending); };
    queue = queue.then(task).catch((e) => status(e.message, true)).finally(done);
  }

  async function undo() {
    const last = state.undo.pop();
    if (!last) { status("Nothing to undo."); return; }
    save();
    select(last.id);
    await decide(last.id, last.field, last.before, false);
  }

  async function togglePick(id) {
    const p = state.byId.get(id);
    if (!p) return;
    const pick = state.info.pick_label;
    await decide(p.id, "label", p.label === pick ? null : pick);
  }

  // -- loading -----------------------------------------------------------------------------------

  async function load() {
    // The flags menu reads "hide:NAMES" or "only:NAME"; the API takes ?hide= and ?only=.
    const wanted = Object.entries(state.filters).filter(([k, v]) => k !== "flags" && v !== "" && v !== null);
    const [how, which] = (state.filters.flags || "").split(":");
    if (how === "hide" || how === "only") wanted.push([how, which]);
    const query = new URLSearchParams(wanted);
    try {
      const [info, photos] = await Promise.all([api("/api/info"), api("/api/photos?" + query)]);
      state.info = info;
      state.photos = photos;
      $("#view-taste").hidden = !info.taste;
      if (info.taste) $("#view-taste").title = `Ranked by your taste '${info.taste}' (charm learn)`;
      if (state.view === "taste" && !info.taste) state.view = "ranked";
      state.byId = new Map(photos.map((p) => [p.id, p]));
      const filtered = photos.length !== info.photos ? ` · ${photos.length} shown` : "";
      $("#summary").textContent = `${info.photos} photos · ${info.groups} groups · model ${info.model}${filtered}`;
      $("#cameras").replaceChildren(...info.cameras.map((c) => Object.assign(document.createElement("option"), { value: c })));
      $("#folders").replaceChildren(...info.folders.map((f) => Object.assign(document.createElement("option"), { value: f })));
      const option = (value, text) => Object.assign(document.createElement("option"), { value, textContent: text });
      const menu = $("#flag-filter");
      menu.replaceChildren(option("", "all photos"), option("hide:all", "hide flagged"),
        ...Object.entries(info.flags || {}).filter(([, n]) => n > 0).map(([f, n]) => option("only:" + f, `only ${f} (${n})`)));
      menu.value = state.filters.flags || "";
      render();
      if (state.loupe) showLoupe();
      document.body.dataset.ready = "yes";
      status(`${photos.length} photo(s). Keys: arrows, 1–5, 0, X, P, G, E, Z, U, ? for help.`);
    } catch (e) {
      status("Cannot load the photos: " + e.message, true);
    }
  }

  function bindFilters() {
    const form = $("#filters");
    for (const [k, v] of Object.entries(state.filters)) if (form.elements[k]) form.elements[k].value = v;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.filters = Object.fromEntries(new FormData(form).entries());
      save();
      load();
    });
    $("#flag-filter").addEventListener("change", () => form.requestSubmit());
    form.addEventListener("reset", () => { state.filters = {}; save(); setTimeout(load, 0); });
    document.querySelectorAll(".views button").forEach((b) => b.addEventListener("click", () => { state.view = b.dataset.view; save(); render(); }));
    $("#help-button").addEventListener("click", () => { $("#help").hidden = !$("#help").hidden; });
  }

  function nextView() {
    const views = ["ranked", "groups", ...(state.info && state.info.taste ? ["taste"] : [])];
    return views[(views.indexOf(state.view) + 1) % views.length];
  }

  function onKey(ev) {
    if (ev.target.closest && ev.target.closest("input, select, textarea")) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key;
    let handled = true;
    if (key === "ArrowRight") move(1);
    else if (key === "ArrowLeft") move(-1);
    else if (key === "ArrowDown") move(state.loupe ? 1 : columns());
    else if (key === "ArrowUp") move(state.loupe ? -1 : -columns());
    else if (key === "Enter" || key === " ") openLoupe();
    else if (key === "Escape") { if (!$("#help").hidden) $("#help").hidden = true; else closeLoupe(); }
    else if (/^[0-5]$/.test(key)) { const id = state.current; enqueue(() => decide(id, "rating", Number(key))); }
    else if (key === "x" || key === "X") { const id = state.current; enqueue(() => decide(id, "rating", -1)); }
    else if (key === "p" || key === "P") { const id = state.current; enqueue(() => togglePick(id)); }
    else if (key === "u" || key === "U") enqueue(undo);
    else if (key === "g") nextInGroup(1);
    else if (key === "G") nextInGroup(-1);
    else if (key === "z" || key === "Z") { state.zoom = !state.zoom; if (state.zoom) state.explain = false; openLoupe(); }
    else if (key === "e" || key === "E") { state.explain = !state.explain; if (state.explain) state.zoom = false; openLoupe(); }
    else if (key === "v" || key === "V") { state.view = nextView(); save(); render(); }
    else if (key === "?") $("#help").hidden = !$("#help").hidden;
    else handled = false;
    if (handled) ev.preventDefault();
  }

  restore();
  bindFilters();
  document.addEventListener("keydown", onKey);
  load();
})();
