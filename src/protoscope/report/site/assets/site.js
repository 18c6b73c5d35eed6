// protoscope report: a static site that opens from disk. Data files are scripts calling
// protoscope.receive(key, data), loaded on demand; images are sprite sheets, one per
// (run, layer, epoch, repeat). Every string from the study goes into the page as text, never HTML.
"use strict";

window.protoscope = (() => {
  const cache = {}, waiting = {}, loadedImages = new Set();
  const timing = { steps: [] };
  let index = null, stopPlaying = null;

  // ------------------------------------------------------------------ loading
  function receive(key, data) {
    if (key === "live") return onLive(data);
    cache[key] = data;
    (waiting[key] || []).forEach(([resolve]) => resolve(data));
    delete waiting[key];
  }

  function load(key, src) {
    if (key in cache) return Promise.resolve(cache[key]);
    return new Promise((resolve, reject) => {
      const first = !(key in waiting);
      (waiting[key] = waiting[key] || []).push([resolve, reject]);
      if (!first) return;
      const tag = document.createElement("script");
      tag.src = src;
      tag.onerror = () => {
        (waiting[key] || []).forEach(([, fail]) => fail(new Error("cannot load " + src)));
        delete waiting[key];
      };
      document.head.appendChild(tag);
    });
  }

  function preload(src) {
    if (loadedImages.has(src)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const image = new Image();
      image.onload = () => { loadedImages.add(src); resolve(true); };
      image.onerror = () => resolve(false);
      image.src = src;
    });
  }

  // while watched, a data file's address carries the generation, so no browser cache serves an old one
  const fresh = () => live ? `?g=${live.generation}` : "";
  const unitsOf = (run, layer) => load(`units/${run.id}/${layer.id}`, `data/${run.id}/${layer.id}/units.js${fresh()}`);
  const epochOf = (run, layer, epoch) =>
    load(`epoch/${run.id}/${layer.id}/${epoch}`, `data/${run.id}/${layer.id}/e${epoch}.js${fresh()}`);

  // ------------------------------------------------------------------ DOM helpers (text only)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "style") Object.assign(node.style, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const svgEl = (tag, attrs) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  };
  // one format for every number: integers as they are, tiny or huge ones in e-notation, the rest to `digits`
  const fmt = (v, digits = 3) => {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return "—";
    const x = Number(v), size = Math.abs(x);
    if (Number.isInteger(x) && size < 1e6) return String(x);
    if (size !== 0 && (size < 1e-3 || size >= 1e6)) return x.toExponential(digits - 1);
    return String(parseFloat(x.toPrecision(digits)));
  };

  // While `protoscope watch` follows training, what reads the whole series was computed on the
  // epochs there are so far: each such place says so (index.provisional, stages/provisional.py).
  function provisionalNote(what) {
    const p = index.provisional;
    if (!p) return null;
    const upto = Object.entries(p.through).map(([run, e]) => `${run} ${e}`).join(", ");
    return el("p", { class: "provisional" }, el("strong", {}, "Provisional"),
      ` — ${what} computed through epoch ${upto}, while training goes on; final when it ends.`);
  }

  function table(spec) {
    return el("div", {},
      el("h2", {}, spec.title),
      spec.note ? el("p", { class: "note" }, spec.note) : null,
      el("table", { "data-table": spec.title },
        el("thead", {}, el("tr", {}, spec.columns.map((c) => el("th", {}, c)))),
        el("tbody", {}, spec.rows.map((row) => el("tr", {}, row.map((v) => el("td", {}, typeof v === "number" ? fmt(v, 4) : v)))))));
  }

  // A sprite cell: unit `unit` of a sheet with `columns` columns of `cell`-px cells, shown at `size` px.
  function sprite(src, unit, columns, cell, size, attrs, box) {
    const node = el("span", Object.assign({ class: "sprite" }, attrs || {}));
    setSprite(node, src, unit, columns, cell, size, box);
    return node;
  }
  // `box`: [y0, y1, x0, x1] in the cell's pixels: only that square is shown, enlarged to `size`
  function setSprite(node, src, unit, columns, cell, size, box) {
    const [y0, , x0] = box || [0, cell, 0], side = box ? box[1] - box[0] : cell;
    const scale = size / side, col = unit % columns, row = Math.floor(unit / columns);
    Object.assign(node.style, {
      width: size + "px", height: size + "px", backgroundImage: `url("${src}")`,
      backgroundSize: `${columns * cell * scale}px auto`,
      backgroundPosition: `${-(col * cell + x0) * scale}px ${-(row * cell + y0) * scale}px`,
      imageRendering: box ? "pixelated" : "",
    });
    node.dataset.src = src;
    node.dataset.unit = unit;
    node.dataset.view = box ? "rf" : "full";
  }
  // the part of a prototype its unit sees (the layer's receptive-field square), or the whole canvas
  let fullCanvas = false;
  const viewBox = (layer) => (fullCanvas || !layer.rf_box) ? null
    : layer.rf_box.map((v) => Math.round(v * layer.cell / layer.image_size));
  const canvasToggle = (redraw) => el("label", { title: "the whole image, not only the part the unit sees" },
    el("input", { type: "checkbox", id: "full-canvas", checked: fullCanvas || null,
      onchange: (ev) => { fullCanvas = ev.target.checked; redraw(); } }), "full canvas");

  // ------------------------------------------------------------------ routes
  // #/  |  #/layer/RUN/LAYER/EPOCH/SORT  |  #/unit/RUN/LAYER/UNIT/EPOCH  |  #/atlas/RUN/LAYER/EPOCH  |  #/figures
  const parse = () => location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const link = (...parts) => "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
  const findRun = (name) => index.runs.find((r) => r.name === name && r.layers.length) ||
    index.runs.find((r) => r.layers.length);
  const findLayer = (run, name) => run.layers.find((l) => l.name === name) || run.layers[0];
  const nearest = (epochs, wanted) => epochs.includes(wanted) ? wanted : epochs[epochs.length - 1];
  const doneEpochs = (layer) => layer.epochs.filter((e, i) => layer.done[i].some(Boolean));
  // a layer of more than `layer.chunk` units has a sheet per chunk of units: unit u is cell u % chunk
  // of the sheet ending _c<k>.png, k = u / chunk (none for the first)
  const chunkOf = (layer, unit) => layer.chunk ? Math.floor(unit / layer.chunk) : 0;
  const cellOf = (layer, unit) => layer.chunk ? unit % layer.chunk : unit;
  const chunked = (stem, layer, unit) => `${stem}${chunkOf(layer, unit) ? "_c" + chunkOf(layer, unit) : ""}.png`;
  const sheet = (run, layer, epoch, repeat, masked, unit) =>
    chunked(`img/${run.id}/${layer.id}/e${epoch}_r${repeat}${masked ? "_m" : ""}`, layer, unit);

  function render() {
    if (stopPlaying) stopPlaying();
    const [view, ...rest] = parse();
    const main = document.getElementById("view");
    const pages = { layer: layerView, unit: unitPage, atlas: atlasView, figures: figuresView };
    const page = pages[view] || overview;
    main.replaceChildren();
    Promise.resolve(page(main, rest)).catch((error) => main.append(el("p", { class: "missing" }, String(error))));
  }

  function start() {
    load("index", "data/index.js").then((data) => {
      index = data;
      document.getElementById("study-name").textContent = data.study;
      window.addEventListener("hashchange", render);
      document.addEventListener("keydown", onKey);
      render();
      if (location.protocol.startsWith("http")) startLive();
    }, (error) => { document.getElementById("view").textContent = String(error); });
  }

  // ------------------------------------------------------------------ live, while `protoscope watch` runs
  // Served over HTTP, the page asks for data/live.js every few seconds. A new generation means the
  // site's data were written again: they are reloaded and the view drawn again, so the slider grows.
  // Opened from disk, the page never asks, and stays as it is.
  let live = null;

  function startLive() {
    const ask = () => {
      const tag = document.createElement("script");
      tag.src = `data/live.js?t=${Date.now()}`;
      tag.onload = tag.onerror = () => tag.remove();
      document.head.appendChild(tag);
    };
    ask();
    setInterval(ask, 3000);
    setInterval(showLive, 1000);
  }

  function onLive(data) {
    const changed = live !== null && live.generation !== data.generation;
    live = data;
    showLive();
    if (!changed) return;
    for (const key of Object.keys(cache)) delete cache[key];
    load("index", `data/index.js${fresh()}`).then((fresher) => { index = fresher; render(); });
  }

  function showLive() {
    if (!live) return;
    let banner = document.getElementById("live");
    if (!banner) {
      banner = el("div", { id: "live", role: "status" });
      document.getElementById("top").after(banner);
    }
    const now = Date.now() / 1000;
    const runs = Object.entries(live.runs).map(([name, r]) => r.finished ? `${name}: finished`
      : `${name}: epoch ${r.latest ?? "—"} of ${r.last}` +
        (r.written ? `, last checkpoint ${Math.max(0, Math.round(now - r.written))} s ago` : ""));
    banner.replaceChildren(
      el("strong", {}, live.finished ? "training finished" : "training"), " — ", runs.join(" · "),
      live.provisional ? el("span", { class: "provisional" }, ` · provisional until training ends: ${live.provisional.results.join(", ")}`)
        : live.waiting.length ? el("span", { class: "note" }, ` · after training: ${live.waiting.join(", ")}`) : null);
  }

  // The epoch slider: every stored epoch, arrows step it, a play button runs through it.
  let activeSlider = null;
  function epochSlider(epochs, current, onChange) {
    const input = el("input", { type: "range", min: 0, max: epochs.length - 1, step: 1,
      value: Math.max(0, epochs.indexOf(current)), id: "epoch-slider", "aria-label": "epoch" });
    const output = el("output", { id: "epoch-label" }, `epoch ${current}`);
    const play = el("button", { type: "button", id: "play" }, "▶ play");
    const set = (i) => {
      i = Math.max(0, Math.min(epochs.length - 1, i));
      input.value = i;
      output.textContent = `epoch ${epochs[i]}`;
      onChange(epochs[i]);
    };
    input.addEventListener("input", () => set(Number(input.value)));
    play.addEventListener("click", () => {
      if (stopPlaying) { stopPlaying(); return; }
      const timer = setInterval(() => set((Number(input.value) + 1) % epochs.length), 700);
      play.textContent = "■ stop";
      stopPlaying = () => { clearInterval(timer); play.textContent = "▶ play"; stopPlaying = null; };
    });
    activeSlider = { step: (d) => set(Number(input.value) + d) };
    return el("div", { class: "slider" }, el("span", {}, "epoch"), input, output, play);
  }
  function onKey(event) {
    const target = event.target;
    if (target && (target.tagName === "SELECT" || (target.tagName === "INPUT" && target.type !== "range"))) return;
    if (target && target.type === "range") return; // the slider moves itself
    if (event.key === "ArrowRight" && activeSlider) { activeSlider.step(1); event.preventDefault(); }
    if (event.key === "ArrowLeft" && activeSlider) { activeSlider.step(-1); event.preventDefault(); }
  }
  const replaceHash = (hash) => history.replaceState(null, "", hash);

  // After new sprites are loaded and painted: how long a slider step took (for the benchmark).
  function afterPaint(started, srcs) {
    return Promise.all(srcs.map(preload)).then(() => new Promise((resolve) => requestAnimationFrame(() => {
      requestAnimationFrame(() => { timing.steps.push(performance.now() - started); resolve(); });
    })));
  }

  function select(options, current, onChange, attrs) {
    const node = el("select", attrs || {}, options.map(([value, label]) =>
      el("option", { value, selected: String(value) === String(current) }, label)));
    node.addEventListener("change", () => onChange(node.value));
    return node;
  }

  // ------------------------------------------------------------------ overview
  const GLOSSARY = [
    ["run", "one network trained from one seed under one condition; a checkpoint is stored after every epoch (epoch 0: before training)"],
    ["condition", "how a run is trained; the built-in studies compare clrjit (SimCLR with colour jitter) and keepclr (without it)"],
    ["seed", "the random seed of a run's initialization and data order"],
    ["unit", "one channel of a layer (a feature of a token layer), studied at the map cell whose receptive field is centred"],
    ["prototype", "an image synthesized to drive one unit as high as it can go: what the unit responds to"],
    ["score", "the unit's activation for its prototype; silent: no image was found that drives it above 0"],
    ["repeat", "an independent synthesis of the same unit from another random start; repeats that agree make a prototype more believable"],
  ];
  function overview(main) {
    main.append(el("h1", {}, "Study ", index.study));
    if (index.question) main.append(el("p", { class: "question", id: "study-question" }, index.question));
    main.append(el("details", { id: "glossary" }, el("summary", {}, "What the words here mean"), el("dl", {}, GLOSSARY.map(([term, text]) =>
      [el("dt", {}, term), el("dd", {}, text)]))));
    const runs = el("table", { id: "runs-table" }, el("thead", {}, el("tr", {}, ["run", "condition", "seed", "checkpoints", "layers"].map((c) => el("th", {}, c)))),
      el("tbody", {}, index.runs.map((run) => el("tr", { "data-run": run.name },
        el("td", { class: "run-name" }, run.name), el("td", {}, run.condition ?? "—"), el("td", {}, run.seed ?? "—"),
        el("td", {}, run.checkpoints.length ? `${run.checkpoints[0]}–${run.checkpoints[run.checkpoints.length - 1]}` : "none"),
        el("td", {}, run.layers.length ? run.layers.map((layer) => [el("a", {
          href: link("layer", run.name, layer.name, doneEpochs(layer).slice(-1)[0] ?? 0, "unit") }, layer.name), " "]) : "—")))));
    main.append(el("h2", {}, "Runs"), runs);
    main.append(table(index.coverage));
    const note = provisionalNote(index.provisional ? index.provisional.results.join(", ") : "");
    if (note) main.append(note);
    index.tables.forEach((spec) => main.append(table(spec)));
    if (index.atlases.length) main.append(el("p", {}, el("a", { href: "#/atlas" }, `Atlases (${index.atlases.length})`)));
    main.append(el("p", {}, el("a", { href: "#/figures" }, `Figures (${index.figures.length})`)));
  }

  // ------------------------------------------------------------------ layer view
  const SORTS = {
    unit: ["unit", () => null, 1],
    score: ["score (high first)", (d, e, r) => d.score[e][r], -1],
    // change since the previous studied epoch (stored at that epoch: the distance to the next one)
    change: ["change since the previous epoch (high first)", (d, e) => {
      const k = d.metric_epochs ? d.metric_epochs.indexOf(d.epochs[e]) - 1 : -1;
      return k >= 0 && d.change ? d.change[k] : null;
    }, -1],
    consistency: ["consistency (most consistent first)", (d, e) => d.consistency && d.metric_epochs ? d.consistency[d.metric_epochs.indexOf(d.epochs[e])] : null, 1],
    matched: ["matched correlation (high first)", (d) => { const p = Object.values(d.partners)[0]; return p ? p.corr : null; }, -1],
    trust: ["trust: path similarity (high first)", (d, e) => d.trust && d.trust.path_similarity ? d.trust.path_similarity[e] : null, -1],
    robust: ["trust: robustness (high first)", (d, e) => d.trust && d.trust.robustness ? d.trust.robustness[e] : null, -1],
    colour: ["tuning: colour selectivity (high first)", (d, e) => d.tuning ? d.tuning.colour_selectivity[e] : null, -1],
    orientation: ["tuning: orientation selectivity (high first)", (d, e) => d.tuning ? d.tuning.orientation_selectivity[e] : null, -1],
  };

  async function layerView(main, [runName, layerName, epochText, sortName, repeatText, maskedText]) {
    if (!index.runs.some((r) => r.layers.length)) { main.append(el("p", { class: "note" }, "No prototypes stored yet.")); return; }
    const run = findRun(runName), layer = findLayer(run, layerName), epochs = doneEpochs(layer);
    if (badAddress(main, run, layer, runName, layerName)) return;
    let epoch = nearest(epochs, Number(epochText)), sort = SORTS[sortName] ? sortName : "unit";
    let repeat = Math.max(0, Math.min(layer.repeats - 1, Number(repeatText) || 0)), masked = maskedText === "masked";
    const data = await unitsOf(run, layer);
    const grid = el("div", { class: "grid", id: "unit-grid" });
    const size = Math.max(48, Math.min(96, layer.cell * 2));
    const draw = () => {
      const e = data.epochs.indexOf(epoch);
      const [, value, direction] = SORTS[sort];
      const values = Array.from({ length: layer.units }, (_, u) => {
        const v = value(data, e, repeat);
        return Array.isArray(v) ? v[u] : (sort === "unit" ? u : null);
      });
      const order = values.map((v, u) => u).sort((a, b) => {
        const va = values[a], vb = values[b];
        if (va === null || va === undefined) return (vb === null || vb === undefined) ? a - b : 1;
        if (vb === null || vb === undefined) return -1;
        return direction * (va - vb) || a - b;
      });
      const srcs = new Set();
      const silent = (data.silent && data.silent[e] && data.silent[e][repeat]) || [];
      grid.replaceChildren(...order.map((u) => {
        const src = sheet(run, layer, epoch, repeat, masked, u);
        srcs.add(src);
        return el("a", { href: link("unit", run.name, layer.name, u, epoch), "data-unit": u,
          class: silent[u] ? "silent" : null, title: silent[u] ? "silent: no image found that drives this unit" : null },
          sprite(src, cellOf(layer, u), layer.columns, layer.cell, size, {}, viewBox(layer)),
          `${u}` + (silent[u] ? " · silent" : "") + (sort === "unit" ? "" : ` · ${fmt(values[u])}`));
      }));
      return [...srcs];
    };
    const update = () => {
      replaceHash(link("layer", run.name, layer.name, epoch, sort, repeat, masked ? "masked" : "plain"));
      return draw();
    };
    const controls = el("div", { class: "controls" },
      el("label", {}, "run", select(index.runs.filter((r) => r.layers.length).map((r) => [r.name, r.name]), run.name,
        (v) => { location.hash = link("layer", v, layer.name, epoch, sort); }, { id: "run-select" })),
      el("label", {}, "layer", select(run.layers.map((l) => [l.name, l.name]), layer.name,
        (v) => { location.hash = link("layer", run.name, v, epoch, sort); }, { id: "layer-select" })),
      epochSlider(epochs, epoch, (value) => { const t = performance.now(); epoch = value; afterPaint(t, update()); }),
      el("label", {}, "repeat", select(Array.from({ length: layer.repeats }, (_, r) => [r, r]), repeat,
        (v) => { repeat = Number(v); update(); }, { id: "repeat-select" })),
      el("label", {}, el("input", { type: "checkbox", id: "masked", checked: masked,
        onchange: (ev) => { masked = ev.target.checked; update(); } }), "masked"),
      layer.rf_box ? canvasToggle(() => update()) : null,
      el("label", {}, "sort", select(Object.entries(SORTS).map(([k, [label]]) => [k, label]), sort,
        (v) => { sort = v; update(); }, { id: "sort-select" })));
    main.append(el("h1", {}, run.name, " · ", layer.name, ` · ${layer.units} units`), controls, grid);
    const started = performance.now();
    await afterPaint(started, update());
    timing.firstLayerPaint = performance.now() - started;
  }

  // An address naming a run, layer or unit that does not exist says so, with a link to a valid page,
  // instead of showing another one under the wrong address.
  function badAddress(main, run, layer, runName, layerName, unitText, unit) {
    const runs = index.runs.filter((r) => r.layers.length).map((r) => r.name);
    let problem = null;
    if (runName && run.name !== runName) problem = `No run named “${runName}” has prototypes; runs: ${runs.join(", ")}.`;
    else if (layerName && layer.name !== layerName)
      problem = `Run ${run.name} has no layer “${layerName}”; layers: ${run.layers.map((l) => l.name).join(", ")}.`;
    else if (unitText !== undefined && unitText !== "" && !(Number.isInteger(Number(unitText)) && unit >= 0 && unit < layer.units))
      problem = `Layer ${layer.name} has ${layer.units} units (0–${layer.units - 1}); there is no unit “${unitText}”.`;
    if (problem === null) return false;
    main.append(el("h1", {}, "Not found"), el("p", { class: "missing", id: "not-found" }, problem),
      el("p", {}, el("a", { href: link("layer", run.name, layer.name) }, `the units of ${run.name} · ${layer.name}`)));
    return true;
  }

  // ------------------------------------------------------------------ unit page
  async function unitPage(main, [runName, layerName, unitText, epochText]) {
    const run = findRun(runName), layer = findLayer(run, layerName), epochs = doneEpochs(layer);
    const unit = Number(unitText) || 0;
    if (badAddress(main, run, layer, runName, layerName, unitText, unit)) return;
    let epoch = nearest(epochs, Number(epochText));
    const data = await unitsOf(run, layer);
    const body = el("div", { class: "panels", id: "unit-panels" });
    const goto = (r, l, u) => {  // another run or layer: the same unit where it has one, else its last
      const target = index.runs.find((x) => x.name === r), to = target && target.layers.find((x) => x.name === l);
      location.hash = link("unit", r, l, to ? Math.max(0, Math.min(to.units - 1, Number(u) || 0)) : u, epoch);
    };
    main.append(
      el("h1", {}, el("a", { href: link("layer", run.name, layer.name, epoch, "unit") }, run.name, " · ", layer.name),
        ` · unit ${unit}`),
      el("div", { class: "controls" },
        el("label", {}, "run", select(index.runs.filter((r) => r.layers.some((l) => l.name === layer.name)).map((r) => [r.name, r.name]),
          run.name, (v) => goto(v, layer.name, unit), { id: "run-select" })),
        el("label", {}, "layer", select(run.layers.map((l) => [l.name, l.name]), layer.name, (v) => goto(run.name, v, unit), { id: "layer-select" })),
        el("label", {}, "unit", el("input", { type: "number", min: 0, max: layer.units - 1, value: unit, id: "unit-input",
          onchange: (ev) => goto(run.name, layer.name, ev.target.value) })),
        el("button", { type: "button", id: "prev-unit", onclick: () => goto(run.name, layer.name, Math.max(0, unit - 1)) }, "◀ unit"),
        el("button", { type: "button", id: "next-unit", onclick: () => goto(run.name, layer.name, Math.min(layer.units - 1, unit + 1)) }, "unit ▶"),
        layer.rf_box ? canvasToggle(() => fill()) : null,
        epochSlider(epochs, epoch, (value) => {
          const t = performance.now();
          epoch = value;
          replaceHash(link("unit", run.name, layer.name, unit, epoch));
          fill().then((srcs) => afterPaint(t, srcs));
        })),
      body);
    const fill = async () => {
      const e = data.epochs.indexOf(epoch);
      const perEpoch = await epochOf(run, layer, epoch).catch(() => null);
      const srcs = [];
      const panels = [prototypesPanel(run, layer, data, unit, epoch, e, srcs), maskPanel(run, layer, unit, epoch, srcs),
        scorePanel(data, unit, epoch), trustPanel(data, unit, epoch, e), tracePanel(perEpoch, unit), topPanel(layer, perEpoch, unit, srcs),
        tuningPanel(data, unit, epoch, e), partnersPanel(layer, data, unit, epoch, srcs), identityPanel(data, unit)];
      body.replaceChildren(...panels.filter(Boolean));
      return srcs;
    };
    const started = performance.now();
    await afterPaint(started, await fill());
    timing.firstUnitPaint = performance.now() - started;
  }

  function prototypesPanel(run, layer, data, unit, epoch, e, srcs) {
    const figures = [];
    for (let r = 0; r < layer.repeats; r++) {
      if (!layer.done[layer.epochs.indexOf(epoch)][r]) continue;
      for (const masked of [false, true]) {
        const src = sheet(run, layer, epoch, r, masked, unit);
        srcs.push(src);
        figures.push(el("figure", {}, sprite(src, cellOf(layer, unit), layer.columns, layer.cell, 144,
          { class: "sprite proto", "data-repeat": r, "data-masked": masked ? 1 : 0 }, viewBox(layer)),
          el("figcaption", {}, `repeat ${r}${masked ? ", masked" : ""}`)));
      }
    }
    const scores = layer.repeats ? Array.from({ length: layer.repeats }, (_, r) =>
      el("span", { class: "score", "data-repeat": r }, `score r${r}: ${fmt(data.score[e][r][unit], 4)}`)) : [];
    const silent = data.silent[e] && data.silent[e].some((row) => row && row[unit]) ? el("p", { class: "missing" }, "silent: no image excited this unit") : null;
    return el("section", { class: "panel" }, el("h2", {}, `Prototype at epoch ${epoch}`), el("div", { class: "row" }, figures),
      el("p", { class: "row", id: "scores" }, scores), silent);
  }

  function maskPanel(run, layer, unit, epoch, srcs) {
    if (!layer.rf.includes(epoch)) return el("section", { class: "panel" }, el("h2", {}, "Receptive field"), el("p", { class: "note" }, "no mask stored at this epoch"));
    const stem = `img/${run.id}/${layer.id}/e${epoch}_mask`;
    const src = layer.per_unit_rf ? chunked(stem, layer, unit) : `${stem}.png`;
    srcs.push(src);
    const node = layer.per_unit_rf ? sprite(src, cellOf(layer, unit), layer.columns, layer.cell, 144, { id: "rf-mask" })
      : sprite(src, 0, 1, layer.cell, 144, { id: "rf-mask" });
    return el("section", { class: "panel" }, el("h2", {}, `Receptive-field mask, epoch ${epoch}`), node,
      el("p", { class: "note" }, layer.per_unit_rf ? "this unit's mask" : "the layer's mask (all units)"));
  }

  const COLOURS = ["#2a6fdb", "#e07a1f", "#2e9e5b", "#9b51e0"];
  const repeatNames = (n) => Array.from({ length: n }, (_, r) => `repeat ${r}`);

  function lineChart(series, xs, marker, options) {
    const width = 300, height = 140, pad = 28;
    const values = series.flat().filter((v) => v !== null && v !== undefined);
    const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: options.cls || "" });
    if (!values.length) return el("p", { class: "note" }, "no values");
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi === lo) { hi += 1e-6; lo -= 1e-6; }
    const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
    const px = (x) => pad + (x - x0) / (x1 - x0) * (width - pad - 8);
    const py = (y) => height - pad + 8 - (y - lo) / (hi - lo) * (height - pad - 8);
    series.forEach((ys, k) => {
      const points = ys.map((y, i) => (y === null || y === undefined) ? null : `${px(xs[i]).toFixed(1)},${py(y).toFixed(1)}`).filter(Boolean);
      svg.append(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: COLOURS[k % COLOURS.length], "stroke-width": 1.5 }));
    });
    if (marker !== null && marker !== undefined) svg.append(svgEl("line", { x1: px(marker), x2: px(marker), y1: 4, y2: height - pad + 8, stroke: "#999", "stroke-dasharray": "3 3" }));
    const label = (text, x, y, anchor, attrs) => {
      const t = svgEl("text", { x, y, "text-anchor": anchor || "start", ...(attrs || {}) });
      t.textContent = text;
      svg.append(t);
    };
    label(fmt(hi), 2, 12); label(fmt(lo), 2, height - pad + 8);
    label(`${options.xlabel} ${x0}`, pad, height - 4); label(String(x1), width - 8, height - 4, "end");
    if (options.ylabel) label(options.ylabel, 10, (height - pad) / 2 + 8, "middle", { transform: `rotate(-90 10 ${(height - pad) / 2 + 8})`, class: "ylabel" });
    if (!options.legend) return svg;
    return el("div", {}, svg, el("p", { class: "legend" }, options.legend.map((name, k) =>
      el("span", { style: { color: COLOURS[k % COLOURS.length], marginRight: "1em" } }, `— ${name}`))));
  }

  // A hue curve around a circle: the radius is the response (the smallest at the centre), each
  // point drawn in its hue (YIQ chroma plane, luminance 0.55), the preferred hue marked by a spoke.
  function hueChart(curve, hues, preferred) {
    const size = 160, c = size / 2, rMax = c - 12;
    const svg = svgEl("svg", { width: size, height: size, viewBox: `0 0 ${size} ${size}`, class: "hue-chart" });
    const values = curve.filter((v) => v !== null);
    if (!values.length) return el("p", { class: "note" }, "not measured at this epoch");
    const lo = Math.min(...values), hi = Math.max(...values) === lo ? lo + 1e-6 : Math.max(...values);
    const at = (v, deg) => { const r = 8 + (v - lo) / (hi - lo) * (rMax - 8), t = deg * Math.PI / 180;
      return [c + r * Math.cos(t), c - r * Math.sin(t)]; };
    svg.append(svgEl("circle", { cx: c, cy: c, r: rMax, fill: "none", stroke: "#ddd" }));
    const points = curve.map((v, i) => v === null ? null : at(v, hues[i])).filter(Boolean);
    svg.append(svgEl("polygon", { points: points.map((p) => p.map((x) => x.toFixed(1)).join(",")).join(" "), fill: "none", stroke: "#555" }));
    curve.forEach((v, i) => { if (v === null) return;
      const [x, y] = at(v, hues[i]), t = hues[i] * Math.PI / 180, I = 0.25 * Math.cos(t), Q = 0.25 * Math.sin(t);
      const rgb = [0.55 + 0.956 * I + 0.621 * Q, 0.55 - 0.272 * I - 0.647 * Q, 0.55 - 1.106 * I + 1.703 * Q]
        .map((u) => Math.round(255 * Math.min(1, Math.max(0, u))));
      svg.append(svgEl("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 5, fill: `rgb(${rgb.join(",")})` })); });
    if (preferred !== null) { const t = preferred * Math.PI / 180;
      svg.append(svgEl("line", { x1: c, y1: c, x2: c + rMax * Math.cos(t), y2: c - rMax * Math.sin(t), stroke: "#000", "stroke-dasharray": "2 2" })); }
    return svg;
  }

  function tuningPanel(data, unit, epoch, e) {
    if (!data.tuning) return null;
    const t = data.tuning, at = (name) => t[name][e][unit];
    const hue = t.hue_curve[e].map((row) => row[unit]), orientation = t.orientation_curve[e].map((row) => row[unit]);
    if (at("colour_selectivity") === null && hue.every((v) => v === null)) {
      return el("section", { class: "panel", id: "tuning-panel" }, el("h2", {}, `Tuning at epoch ${epoch}`),
        el("p", { class: "note" }, "not measured at this epoch, or no stimulus drives the unit above 0"));
    }
    return el("section", { class: "panel", id: "tuning-panel" }, el("h2", {}, `Tuning at epoch ${epoch}`),
      el("div", { class: "row" }, hueChart(hue, t.steps.hue, at("preferred_hue")),
        lineChart([orientation], t.steps.orientation, at("preferred_orientation"), { xlabel: "orientation°", ylabel: "response", cls: "orientation-chart" })),
      el("p", { id: "tuning-values" }, `colour selectivity ${fmt(at("colour_selectivity"))} (chance ${fmt(at("colour_selectivity_chance"))})`
        + ` · preferred hue ${fmt(at("preferred_hue"))}° · orientation selectivity ${fmt(at("orientation_selectivity"))}`
        + ` · preferred orientation ${fmt(at("preferred_orientation"))}° · preferred frequency ${fmt(at("preferred_frequency"))} cycles/image`));
  }

  function scorePanel(data, unit, epoch) {
    const series = Array.from({ length: data.repeats }, (_, r) => data.score.map((row) => row[r][unit]));
    return el("section", { class: "panel" }, el("h2", {}, "Score over training"),
      lineChart(series, data.epochs, epoch, { xlabel: "epoch", ylabel: "activation", cls: "score-chart",
        legend: repeatNames(data.repeats) }));
  }

  function trustPanel(data, unit, epoch, e) {
    if (!data.trust) return null;
    const t = data.trust, at = (name) => (t[name] ? t[name][e][unit] : null);
    const names = [["path_similarity", "path similarity"], ["robustness", "robustness"], ["trustworthy", "trustworthy"]]
      .filter(([name]) => t[name]);
    const series = names.map(([name]) => t[name].map((row) => row[unit]));
    const ok = at("trustworthy");
    const verdict = ok === null ? "no prototype (silent)" : ok >= 0.5 ? "trustworthy" : "not trustworthy";
    return el("section", { class: "panel", id: "trust-panel" }, el("h2", {}, "Trust over training"),
      provisionalNote("trust is"), lineChart(series, data.epochs, epoch, { xlabel: "epoch", ylabel: "score", cls: "trust-chart",
        legend: names.map(([, label]) => label) }),
      el("p", { id: "trust-values" }, `epoch ${epoch}: ${verdict} · path ${fmt(at("path_similarity"))} · robustness `
        + `${fmt(at("robustness"))} · natural ratio ${fmt(at("natural_ratio"))} · plausibility ${fmt(at("plausibility"))}`
        + ` · spectral ${fmt(at("spectral_naturalness"))}`),
      el("p", { class: "note" }, "path similarity: chance 0; robustness: 1 = nothing lost under small moves; natural "
        + "ratio: the prototype over the best stimulus image at the same cell (README: Can a prototype be trusted?)"));
  }

  function tracePanel(perEpoch, unit) {
    if (!perEpoch) return null;
    const series = perEpoch.trace.map((repeat) => repeat[unit]);
    return el("section", { class: "panel" }, el("h2", {}, "Optimization trace"),
      lineChart(series, perEpoch.trace_steps, null, { xlabel: "step", ylabel: "activation", cls: "trace-chart",
        legend: repeatNames(series.length) }),
      el("p", { class: "note" }, "score after each step (CMA-ES then Adam)"));
  }

  function topPanel(layer, perEpoch, unit, srcs) {
    if (!perEpoch || !perEpoch.top || !index.probe) {
      return el("section", { class: "panel" }, el("h2", {}, "Top stimulus images"), el("p", { class: "note" }, "stimulus activations not stored at this epoch"));
    }
    const probe = index.probe;
    const images = perEpoch.top[unit].map((image, k) => el("figure", {},
      sprite(chunked("img/stimuli", probe, image), cellOf(probe, image), probe.columns, probe.cell, 64,
        { class: "sprite top-image", "data-image": image }),
      el("figcaption", {}, `${probe.categories[probe.labels[image]]} ${fmt(perEpoch.top_value[unit][k])}`)));
    srcs.push(...new Set(perEpoch.top[unit].map((image) => chunked("img/stimuli", probe, image))));
    const hist = perEpoch.histogram[unit];
    const width = 300, height = 90, most = Math.max(1, ...hist.counts);
    const svg = svgEl("svg", { width, height, class: "histogram" });
    hist.counts.forEach((count, k) => svg.append(svgEl("rect", { x: k * width / hist.counts.length + 1, width: width / hist.counts.length - 2,
      y: height - 14 - count / most * (height - 18), height: count / most * (height - 18), fill: "#2a6fdb", "data-count": count })));
    svg.append(svgEl("line", { x1: 0, x2: width, y1: height - 14, y2: height - 14, stroke: "#999" }));
    const axis = (text, x, anchor) => { const t = svgEl("text", { x, y: height - 2, "text-anchor": anchor }); t.textContent = text; svg.append(t); };
    axis(fmt(hist.lo), 0, "start"); axis("activation (mean over positions) →", width / 2, "middle"); axis(fmt(hist.hi), width, "end");
    const top = svgEl("text", { x: 2, y: 10, class: "ylabel" }); top.textContent = `images (most: ${most})`; svg.append(top);
    return el("section", { class: "panel" }, el("h2", {}, "Top stimulus images"), el("div", { class: "row", id: "top-images" }, images),
      el("p", { class: "note" }, "ranked by the unit's mean over positions; the prototype drives one cell (its natural ratio compares the two there)"),
      el("h2", {}, "Activations over the stimulus set"), svg);
  }

  function partnersPanel(layer, data, unit, epoch, srcs) {
    const entries = Object.entries(data.partners || {});
    if (!entries.length) {
      return el("section", { class: "panel", id: "partners-panel" }, el("h2", {}, "Partners in other runs"),
        el("p", { class: "note" }, "no alignment of this run is stored (protoscope align pairs runs of one condition "
          + "by seed; a run without a partner run has none)"));
    }
    const rows = entries.map(([otherId, match]) => {
      const other = index.runs.find((r) => r.id === otherId);
      const partner = match.unit[unit];
      if (!other || partner < 0) return el("p", { class: "note" }, `${other ? other.name : otherId}: no partner (correlation below threshold)`);
      const otherLayer = other.layers.find((l) => l.name === layer.name);
      const stored = otherLayer && doneEpochs(otherLayer).includes(epoch);
      let picture = null;
      if (stored) {
        const src = sheet(other, otherLayer, epoch, 0, false, partner);
        srcs.push(src);
        picture = sprite(src, cellOf(otherLayer, partner), otherLayer.columns, otherLayer.cell, 96, { class: "sprite partner-proto" });
      }
      return el("div", { class: "row partner", "data-run": other.name },
        picture, el("div", {}, el("a", { href: link("unit", other.name, layer.name, partner, epoch), class: "partner-link" },
          `${other.name} unit ${partner}`), el("br"), `r = ${fmt(match.corr[unit])} (bipartite, aligned at epoch ${match.epoch})`));
    });
    return el("section", { class: "panel" }, el("h2", {}, "Matched units in other runs"), provisionalNote("the matches are"), rows);
  }

  function identityPanel(data, unit) {
    if (!data.identity_epoch) {
      return el("section", { class: "panel" }, el("h2", {}, "Identity"), el("p", { class: "note", id: "identity" },
        "not tracked: the epoch a unit takes its final identity is measured for the runs in align.track"));
    }
    const e = data.identity_epoch[unit];
    return el("section", { class: "panel" }, el("h2", {}, "Identity"), provisionalNote("the identity epoch is"),
      el("p", { id: "identity" }, e >= 0 ? `took its final identity at epoch ${e}` : "never settled (self-correlation with its final self stayed below the threshold)"));
  }

  // ------------------------------------------------------------------ atlases
  function atlasView(main, [runName, layerName, epochText]) {
    if (!index.atlases.length) { main.append(el("p", { class: "note" }, "No atlases stored.")); return; }
    const note = provisionalNote("this atlas's map is");
    if (note) main.append(note);
    const byName = (id, list) => list.find((x) => x.id === id);
    const named = index.atlases.map((a) => {
      const run = byName(a.run, index.runs);
      return { atlas: a, run, layerName: Object.keys(index.layers).find((n) => index.layers[n] === a.layer) };
    });
    const current = named.find((n) => n.run.name === runName && n.layerName === layerName) || named[0];
    const epochs = current.atlas.epochs.map((e) => e.epoch);
    let epoch = nearest(epochs, Number(epochText));
    const image = el("img", { id: "atlas-image", alt: "atlas", style: { imageRendering: "pixelated", width: "480px" } });
    const density = el("div", { id: "atlas-density" });
    const draw = () => {
      const entry = current.atlas.epochs.find((e) => e.epoch === epoch);
      image.src = `img/atlas/${current.atlas.run}/${current.atlas.layer}/e${epoch}.png`;
      const g = current.atlas.grid, most = Math.max(1, ...entry.counts), cell = 480 / g;
      const svg = svgEl("svg", { width: 480, height: 480, viewBox: "0 0 480 480", style: "max-width: 100%; height: auto" });
      entry.counts.forEach((count, c) => {
        const row = Math.floor(c / g), col = c % g;
        svg.append(svgEl("rect", { x: col * cell, y: (g - 1 - row) * cell, width: cell, height: cell, fill: `rgba(42,111,219,${count / most})` }));
      });
      density.replaceChildren(svg);
      replaceHash(link("atlas", current.run.name, current.layerName, epoch));
    };
    const shared = current.atlas.map_runs.length > 1 ? `one map shared with ${current.atlas.map_runs.map((id) => (byName(id, index.runs) || { name: id }).name).join(", ")}` : "one map shared by its epochs";
    main.append(el("h1", {}, "Atlas · ", current.run.name, " · ", current.layerName),
      el("div", { class: "controls" },
        el("label", {}, "atlas", select(named.map((n, k) => [k, `${n.run.name} ${n.layerName}`]), named.indexOf(current),
          (k) => { location.hash = link("atlas", named[k].run.name, named[k].layerName, epoch); }, { id: "atlas-select" })),
        epochSlider(epochs, epoch, (value) => { epoch = value; draw(); })),
      el("p", { class: "note" }, shared, "; epoch 0 is the random initialisation"),
      el("div", { class: "row" }, el("figure", {}, image, el("figcaption", {}, "icons of each cell's mean direction")),
        el("figure", {}, density, el("figcaption", {}, "activations per cell"))));
    draw();
  }

  // ------------------------------------------------------------------ figures
  // what each figure shows, by the start of its file name: [section, caption]
  const FIGURES = [
    ["training_loss", "Training", "SimCLR loss over training, per run"],
    ["probe_accuracy", "Training", "linear-probe test accuracy over training, per run and classifier"],
    ["prototypes_", "Prototypes", "prototypes of the layer's units over training"],
    ["development_", "Prototypes", "how the layer's prototypes develop, epoch by epoch"],
    ["prototype_diversity", "Prototype metrics", "diversity: how different a layer's prototypes are from each other"],
    ["prototype_change", "Prototype metrics", "rate of change: how far prototypes move between epochs"],
    ["prototype_consistency", "Prototype metrics", "consistency: how alike two repeats of the same unit are"],
    ["effective_dimensionality", "Prototype metrics", "effective dimensionality of each layer's activations over training"],
    ["rsa_", "Representational geometry (RSA)", "RDMs of the stimulus set and how they change over training"],
    ["align_", "Convergent learning", "alignment of units between runs and with a run's last epoch"],
    ["trust_", "Trust", "how far the prototypes can be trusted, over training"],
    ["atlas_", "Activation atlases", "activation atlases: a map of the stimulus set's activations"],
    ["width_", "Width study", "how width changes what a linear read-out finds"],
  ];

  function figuresView(main) {
    main.append(el("h1", {}, "Figures"));
    if (!index.figures.length) {
      main.append(el("p", { class: "note" }, index.provisional
        ? "The figures are drawn when training ends; until then the pages show every result there is." : "No figures drawn yet."));
      return;
    }
    const note = provisionalNote("the figures of prototype metrics, RSA, alignment, trust and atlases are");
    if (note) main.append(note);
    main.append(el("p", { class: "note" }, "Click a figure for its full size; STORE/figures keeps each at full resolution, and as PDF."));
    const sections = new Map();
    for (const name of index.figures) {
      const [, section, caption] = FIGURES.find(([prefix]) => name.startsWith(prefix)) || [null, "Other", ""];
      if (!sections.has(section)) sections.set(section, []);
      sections.get(section).push(el("figure", {},
        el("a", { href: "figures/" + encodeURIComponent(name), target: "_blank" },
          el("img", { src: "figures/" + encodeURIComponent(name), alt: caption || name, loading: "lazy" })),
        el("figcaption", {}, caption ? [el("strong", {}, caption), ` (${name})`] : name)));
    }
    for (const [section, figures] of sections) main.append(el("h2", {}, section), el("div", { class: "gallery" }, figures));
  }

  return { receive, load, start, timing, get index() { return index; } };
})();
