// The explorer page: asks GET /i2i exactly as a client does (user and variant headers included) and the
// /explore/* routes for what a client does not need (search, item cards, the 2-D map). Plain JS, no
// library, nothing fetched from another origin. Ids are numbers, or the dataset's own strings when the
// served version was built from string ids: they are passed around as given and URL-encoded when sent.
"use strict";

const state = {
  config: null,
  trigger: null,
  loads: 0,
  map: null,          // {ids, x, y, category, titles, category_labels}
  highlight: null,    // {trigger: card, general: [card], diversity: [card]}
  view: {scale: 1, dx: 0, dy: 0},
  base: null,         // fit of the map's bounds to the canvas
  drag: null,
};

const $ = (sel) => document.querySelector(sel);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJson(url, headers = {}) {
  const response = await fetch(url, {headers});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function setStatus(text, isError = false) {
  const node = $("#status");
  node.textContent = text;
  node.classList.toggle("error", isError);
}

// ------------------------------------------------------------------------------------------- names

// -1 (integer ids) and null (string ids) both mean "unknown"
function unknownId(id) {
  return id === null || id === undefined || (typeof id === "number" && id < 0);
}

function categoryName(card) {
  const view = state.config.category_view;
  const attr = card && card.attributes ? card.attributes[view] : undefined;
  if (!attr || unknownId(attr.id)) return "unknown category";
  return attr.label ? attr.label : `category ${attr.id}`;
}

function itemName(id, title) {
  return title ? title : `item ${id}`;
}

function colourOf(category) {
  if (unknownId(category)) return "hsl(0, 0%, 70%)";
  let key = category;
  if (typeof category === "string") {  // a string id: a stable number from its characters
    key = 0;
    for (let i = 0; i < category.length; i++) key = (key * 31 + category.charCodeAt(i)) % 1000003;
  }
  const hue = (key * 137.508) % 360;
  return `hsl(${hue.toFixed(1)}, 55%, 55%)`;
}

// ------------------------------------------------------------------------------------------- search

async function runSearch(event) {
  if (event) event.preventDefault();
  const query = $("#search").value.trim();
  if (!query) return;
  setStatus("searching…");
  try {
    const found = await getJson(`/explore/search?q=${encodeURIComponent(query)}&limit=30`);
    const list = $("#results");
    list.replaceChildren();
    for (const card of found.results) {
      list.append(el("li", {dataset: {item: card.item_id}, title: `item ${card.item_id}`,
                            onclick: () => select(card.item_id)},
                     itemName(card.item_id, card.title), " ", el("span", {className: "cat"}, categoryName(card))));
    }
    setStatus(found.results.length ? `${found.results.length} found` : `nothing matches “${query}”`);
    if (found.results.length === 1) select(found.results[0].item_id);
  } catch (error) {
    setStatus(`search failed: ${error.message}`, true);
  }
}

// ------------------------------------------------------------------------------------------- trigger

function select(itemId) {
  state.trigger = String(itemId);
  history.replaceState(null, "", `#item=${encodeURIComponent(state.trigger)}`);
  load();
}

function idList(ids) {
  return ids.map((id) => encodeURIComponent(String(id))).join(",");
}

function clientHeaders() {
  const headers = {};
  const user = $("#user").value.trim();
  const variant = $("#variant").value;
  if (user) headers[state.config.user_header] = user;
  if (variant) headers[state.config.variant_header] = variant;
  return headers;
}

async function load() {
  if (state.trigger === null) return;
  const trigger = state.trigger;
  const k = Math.max(1, Math.min(Number($("#k").value) || state.config.default_k, state.config.max_k));
  const headers = clientHeaders();
  document.body.dataset.state = "loading";
  setStatus("loading…");
  const ask = (mode) => getJson(`/i2i/${encodeURIComponent(trigger)}?mode=${mode}&k=${k}&fields=title`, headers)
    .then((answer) => ({answer}), (error) => ({error}));
  const [card, general, diversity] = await Promise.all([
    getJson(`/explore/items?ids=${idList([trigger])}`).then((r) => r.items[0], () => null),
    ask("general"),
    ask("diversity"),
  ]);
  if (trigger !== state.trigger) return;  // a newer selection won
  renderCard(card, trigger);
  const answers = {general, diversity};
  const highlight = {trigger: card, general: [], diversity: []};
  for (const mode of ["general", "diversity"]) {
    highlight[mode] = await renderColumn(mode, answers[mode], trigger);
  }
  if (trigger !== state.trigger) return;
  state.highlight = highlight;
  drawMap();
  state.loads += 1;
  document.body.dataset.loads = String(state.loads);
  document.body.dataset.state = "ready";
  const failed = [general, diversity].filter((r) => r.error);
  setStatus(failed.length ? failed.map((r) => r.error.message).join("; ") : `item ${trigger}`, failed.length > 0);
}

function renderCard(card, trigger) {
  const box = $("#card");
  box.replaceChildren();
  if (!card) {
    box.append(el("p", {className: "error"}, `item ${trigger} is not in the served version`));
    return;
  }
  const rows = [["item id", card.item_id]];
  for (const [view, attr] of Object.entries(card.attributes)) {
    const named = attr.label && attr.label !== attr.id ? `${attr.label} (${attr.id})` : attr.id;
    rows.push([view, unknownId(attr.id) ? "unknown" : named]);
  }
  const warmth = card.train_count < 0 ? "unknown" : (card.cold ? "cold (no training events)" : `warm (${card.train_count} training events)`);
  rows.push(["cold/warm", warmth]);
  const list = el("dl");
  for (const [key, value] of rows) list.append(el("dt", {}, key), el("dd", {}, value));
  box.append(el("div", {className: "title", id: "card-title"}, itemName(card.item_id, card.title)), list);
  box.dataset.item = String(card.item_id);
}

async function renderColumn(mode, result, trigger) {
  const column = $(`#col-${mode}`);
  const meta = column.querySelector(".meta");
  const excluded = column.querySelector(".excluded");
  const list = column.querySelector("ol.candidates");
  list.replaceChildren();
  excluded.replaceChildren();
  if (result.error) {
    meta.replaceChildren(el("span", {className: "error"}, result.error.message));
    excluded.dataset.categories = "";
    column.dataset.returned = "0";
    return [];
  }
  const answer = result.answer;
  meta.textContent = `variant ${answer.variant} (${answer.strategy}) · version ${answer.index_version} · ` +
    `${answer.returned} of k=${answer.k}${answer.exhausted ? " (exhausted)" : ""} · request ${answer.request_id.slice(0, 12)}…`;
  const ids = answer.candidates.map((c) => c.item_id);
  const [cards, names] = await Promise.all([
    ids.length ? getJson(`/explore/items?ids=${idList(ids)}&version=${encodeURIComponent(answer.index_version)}`)
      .then((r) => r.items, () => ids.map(() => null)) : Promise.resolve([]),
    answer.excluded_categories.length
      ? getJson(`/explore/labels?ids=${idList(answer.excluded_categories)}`).then((r) => r.labels, () => ({}))
      : Promise.resolve({}),
  ]);
  if (trigger !== state.trigger) return [];
  excluded.dataset.categories = answer.excluded_categories.join(",");
  excluded.append(el("span", {className: "muted"}, "excluded categories: "));
  if (!answer.excluded_categories.length) excluded.append(el("span", {className: "muted"}, "none"));
  for (const id of answer.excluded_categories) {
    excluded.append(el("span", {className: "chip", dataset: {category: id}}, names[id] ? names[id] : `category ${id}`));
  }
  answer.candidates.forEach((candidate, i) => {
    const card = cards[i];
    const channels = (candidate.channels || []).map((c) => el("span", {className: "channel"}, c));
    if (candidate.cold) channels.push(el("span", {className: "channel cold", title: "placed from its side views"}, "cold"));
    list.append(el("li", {className: "candidate", dataset: {item: candidate.item_id}, title: `item ${candidate.item_id}`,
                          onclick: () => select(candidate.item_id)},
                   el("span", {className: "score"}, candidate.score.toFixed(4)),
                   el("span", {className: "name"}, itemName(candidate.item_id, candidate.title)), ...channels,
                   el("br"), el("span", {className: "cat"}, card ? categoryName(card) : "")));
  });
  column.dataset.returned = String(answer.returned);
  return cards.filter((c) => c);
}

// ------------------------------------------------------------------------------------------- map

function canvasSize(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const rect = canvas.getBoundingClientRect();
  const width = Math.max(1, Math.round(rect.width * ratio));
  const height = Math.max(1, Math.round(rect.height * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  return {width, height, ratio};
}

function fitBase(width, height) {
  const {x, y} = state.map;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < x.length; i++) {
    x0 = Math.min(x0, x[i]); x1 = Math.max(x1, x[i]);
    y0 = Math.min(y0, y[i]); y1 = Math.max(y1, y[i]);
  }
  const pad = 16 * (window.devicePixelRatio || 1);
  const scale = Math.min((width - 2 * pad) / Math.max(x1 - x0, 1e-9), (height - 2 * pad) / Math.max(y1 - y0, 1e-9));
  return {scale, cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, width, height};
}

function toScreen(px, py) {
  const b = state.base, v = state.view;
  const sx = (px - b.cx) * b.scale * v.scale + b.width / 2 + v.dx;
  const sy = -(py - b.cy) * b.scale * v.scale + b.height / 2 + v.dy;
  return [sx, sy];
}

function drawMap() {
  const canvas = $("#map");
  const ctx = canvas.getContext("2d");
  const {width, height, ratio} = canvasSize(canvas);
  ctx.clearRect(0, 0, width, height);
  if (!state.map || !state.map.ids.length) {
    ctx.fillStyle = "#6b7280";
    ctx.font = `${13 * ratio}px sans-serif`;
    ctx.fillText("this version has no map", 20 * ratio, 30 * ratio);
    return;
  }
  if (!state.base || state.base.width !== width || state.base.height !== height) state.base = fitBase(width, height);
  const {x, y, category} = state.map;
  const r = Math.max(1.5, 2 * ratio);
  ctx.globalAlpha = state.highlight ? 0.45 : 0.8;
  for (let i = 0; i < x.length; i++) {
    const [sx, sy] = toScreen(x[i], y[i]);
    if (sx < -r || sy < -r || sx > width + r || sy > height + r) continue;
    ctx.fillStyle = colourOf(category[i]);
    ctx.fillRect(sx - r, sy - r, 2 * r, 2 * r);
  }
  ctx.globalAlpha = 1;
  const h = state.highlight;
  if (!h) return;
  const ring = (card, colour, radius, fill) => {
    if (!card || card.x === null) return;
    const [sx, sy] = toScreen(card.x, card.y);
    ctx.beginPath();
    ctx.arc(sx, sy, radius, 0, 2 * Math.PI);
    ctx.lineWidth = 2 * ratio;
    ctx.strokeStyle = colour;
    if (fill) { ctx.fillStyle = colour; ctx.fill(); }
    ctx.stroke();
  };
  const styles = getComputedStyle(document.documentElement);
  for (const card of h.general) ring(card, styles.getPropertyValue("--general").trim(), 5 * ratio, false);
  for (const card of h.diversity) ring(card, styles.getPropertyValue("--diversity").trim(), 5 * ratio, false);
  ring(h.trigger, styles.getPropertyValue("--trigger").trim(), 6 * ratio, true);
  // where the trigger is drawn, in CSS pixels of the canvas (for people's tools and the browser test)
  if (h.trigger && h.trigger.x !== null) {
    const [sx, sy] = toScreen(h.trigger.x, h.trigger.y);
    canvas.dataset.trigger = `${(sx / ratio).toFixed(1)},${(sy / ratio).toFixed(1)}`;
  }
}

function renderLegend() {
  const legend = $("#legend");
  legend.replaceChildren();
  if (!state.map || !state.map.ids.length) return;
  const counts = new Map();
  for (const c of state.map.category) counts.set(c, (counts.get(c) || 0) + 1);
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  legend.append("most frequent categories:");
  for (const [c] of top) {
    const swatch = el("span", {className: "swatch"});
    swatch.style.background = colourOf(c);
    legend.append(swatch, state.map.category_labels[String(c)] || (unknownId(c) ? "unknown" : `category ${c}`));
  }
}

function nearestPoint(mx, my) {
  // the highlighted items are drawn on top: within their ring, they win over the points under them
  const ratio = window.devicePixelRatio || 1;
  const px = mx * ratio, py = my * ratio;
  const closest = (candidates, radius) => {
    let best = null, bestD = radius * radius;
    for (const [sx, sy, hit] of candidates) {
      const d = (sx - px) ** 2 + (sy - py) ** 2;
      if (d < bestD) { bestD = d; best = hit; }
    }
    return best;
  };
  const h = state.highlight;
  const marked = h ? [h.trigger, ...h.general, ...h.diversity].filter((c) => c && c.x !== null) : [];
  const onTop = closest(marked.map((c) => [...toScreen(c.x, c.y), {id: c.item_id, title: c.title}]), 7 * ratio);
  if (onTop) return onTop;
  const {x, y, ids, titles} = state.map;
  const points = [];
  for (let i = 0; i < x.length; i++) points.push([...toScreen(x[i], y[i]), i]);
  const i = closest(points, 8 * ratio);
  return i === null ? null : {id: ids[i], title: titles ? titles[i] : null};
}

function wireMap() {
  const canvas = $("#map");
  const tooltip = $("#tooltip");
  canvas.addEventListener("wheel", (event) => {
    if (!state.base) return;
    event.preventDefault();
    const ratio = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    const mx = (event.clientX - rect.left) * ratio, my = (event.clientY - rect.top) * ratio;
    const factor = Math.exp(-event.deltaY * 0.0015);
    const v = state.view;
    const next = Math.min(200, Math.max(0.5, v.scale * factor));
    const f = next / v.scale;
    // keep the point under the cursor still
    v.dx = mx - state.base.width / 2 - (mx - state.base.width / 2 - v.dx) * f;
    v.dy = my - state.base.height / 2 - (my - state.base.height / 2 - v.dy) * f;
    v.scale = next;
    drawMap();
  }, {passive: false});
  canvas.addEventListener("mousedown", (event) => {
    state.drag = {x: event.clientX, y: event.clientY, dx: state.view.dx, dy: state.view.dy};
  });
  window.addEventListener("mouseup", () => { state.drag = null; });
  canvas.addEventListener("mousemove", (event) => {
    const ratio = window.devicePixelRatio || 1;
    if (state.drag) {
      state.view.dx = state.drag.dx + (event.clientX - state.drag.x) * ratio;
      state.view.dy = state.drag.dy + (event.clientY - state.drag.y) * ratio;
      tooltip.hidden = true;
      drawMap();
      return;
    }
    if (!state.map || !state.base) return;
    const rect = canvas.getBoundingClientRect();
    const hit = nearestPoint(event.clientX - rect.left, event.clientY - rect.top);
    if (!hit) { tooltip.hidden = true; return; }
    tooltip.textContent = `${itemName(hit.id, hit.title)} · ${hit.id}`;
    tooltip.style.left = `${event.clientX - rect.left + 12}px`;
    tooltip.style.top = `${event.clientY - rect.top + 12}px`;
    tooltip.hidden = false;
  });
  canvas.addEventListener("mouseleave", () => { tooltip.hidden = true; });
  canvas.addEventListener("dblclick", (event) => {
    if (!state.map || !state.base) return;
    const rect = canvas.getBoundingClientRect();
    const hit = nearestPoint(event.clientX - rect.left, event.clientY - rect.top);
    if (hit) select(hit.id);
  });
  $("#map-reset").addEventListener("click", () => {
    state.view = {scale: 1, dx: 0, dy: 0};
    drawMap();
  });
  window.addEventListener("resize", () => { state.base = null; drawMap(); });
}

// ------------------------------------------------------------------------------------------- start

async function start() {
  try {
    state.config = await getJson("/explore/config");
  } catch (error) {
    setStatus(`cannot read /explore/config: ${error.message}`, true);
    document.body.dataset.state = "error";
    return;
  }
  const config = state.config;
  $("#version").textContent = `version ${config.version}` + (config.has_titles ? "" : " · no titles: ids shown");
  $("#k").value = String(config.default_k);
  $("#k").max = String(config.max_k);
  for (const name of config.variants) $("#variant").append(el("option", {value: name}, name));
  $("#search-form").addEventListener("submit", runSearch);
  for (const id of ["#user", "#variant", "#k"]) $(id).addEventListener("change", load);
  wireMap();
  try {
    state.map = await getJson("/explore/map?max_points=6000");
    $("#map-note").textContent = state.map.ids.length
      ? `PCA of the general-mode vectors, ${state.map.ids.length} of ${state.map.total} items, coloured by category`
      : "";
    renderLegend();
  } catch (error) {
    state.map = null;
    $("#map-note").textContent = `no map: ${error.message}`;
  }
  drawMap();
  document.body.dataset.state = "idle";
  const fromHash = /item=([^&]+)/.exec(location.hash);
  if (fromHash) select(decodeURIComponent(fromHash[1]));
}

document.addEventListener("DOMContentLoaded", start);
