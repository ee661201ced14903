// embedserve playground: plain JavaScript against the server's own API (no build step, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "embedserve.apiKey"; // sessionStorage only: gone when the tab closes
let config = { auth: false, llm: false, version: "" };

// ---- API -------------------------------------------------------------------------------------

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

// The API's own words: {"error": "..."} (Ollama routes) or {"error": {"message": ...}} (OpenAI).
async function errorText(resp) {
  const text = await resp.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string") return body.error;
    if (body && body.error && typeof body.error.message === "string") return body.error.message;
  } catch (_) { /* not JSON */ }
  return text.trim() || resp.status + " " + resp.statusText;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "cannot reach the server: " + err.message);
  }
  if (!resp.ok) throw new ApiError(resp.status, await errorText(resp));
  return resp;
}

const getJSON = async (path) => (await api("GET", path)).json();
const postJSON = async (path, body) => (await api("POST", path, body)).json();

// NDJSON stream: calls onLine(object) per line; a line {"error": ...} becomes an ApiError.
async function stream(path, body, onLine) {
  const resp = await api("POST", path, body);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const obj = JSON.parse(line);
      if (typeof obj.error === "string") throw new ApiError(200, obj.error);
      onLine(obj);
    }
    if (done) break;
  }
}

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = err.message || String(err);
  box.hidden = false;
}

async function guarded(fn) {
  showError(null);
  try { await fn(); } catch (err) { showError(err); }
}

// ---- tabs (WAI-ARIA tabs: arrows, Home, End) -------------------------------------------------

const tabs = Array.from(document.querySelectorAll("[role=tab]"));
const onShow = {};

function select(tab, focus) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
  const name = tab.id.replace("tab-", "");
  if (onShow[name]) guarded(onShow[name]);
}

tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => select(tab, false));
  tab.addEventListener("keydown", (e) => {
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    select(tabs[(to + tabs.length) % tabs.length], true);
  });
});

// ---- models shared by the selects ------------------------------------------------------------

async function fillModelSelects() {
  const tags = await getJSON("/api/tags");
  for (const sel of document.querySelectorAll(".model-select")) {
    const keep = sel.value;
    sel.textContent = "";
    if (sel.dataset.optional) sel.append(new Option("(none)", ""));
    for (const m of tags.models) sel.append(new Option(m.name, m.name));
    if (keep && Array.from(sel.options).some((o) => o.value === keep)) sel.value = keep;
  }
  return tags.models;
}

// ---- similarity ------------------------------------------------------------------------------

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
}

function colour(v) { // -1 blue .. 0 white .. 1 red
  const t = Math.max(-1, Math.min(1, v));
  const mix = (a, b, f) => Math.round(a + (b - a) * f);
  const [r, g, b] = t >= 0
    ? [mix(247, 192, t), mix(247, 57, t), mix(247, 43, t)]
    : [mix(247, 59, -t), mix(247, 111, -t), mix(247, 182, -t)];
  return `rgb(${r},${g},${b})`;
}

function matrixTable(model, texts, vectors) {
  const wrap = document.createElement("div");
  wrap.className = "matrix";
  wrap.dataset.model = model;
  const h = document.createElement("h2");
  h.textContent = model;
  wrap.append(h);
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  head.append(document.createElement("th"));
  texts.forEach((t, j) => {
    const th = document.createElement("th");
    th.scope = "col"; th.textContent = (j + 1) + ". " + t; th.title = t;
    head.append(th);
  });
  const body = table.createTBody();
  texts.forEach((t, i) => {
    const row = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row"; th.textContent = (i + 1) + ". " + t; th.title = t;
    row.append(th);
    texts.forEach((u, j) => {
      const v = cosine(vectors[i], vectors[j]);
      const td = row.insertCell();
      td.textContent = v.toFixed(2);
      td.dataset.value = String(v);
      td.dataset.row = String(i);
      td.dataset.col = String(j);
      td.style.background = colour(v);
      td.title = `cos(${i + 1}, ${j + 1}) = ${v.toFixed(4)}\n${t}\n${u}`;
      td.tabIndex = 0;
      td.setAttribute("aria-label", `cosine ${v.toFixed(4)} between sentence ${i + 1} and ${j + 1}`);
    });
  });
  wrap.append(table);
  const scale = document.createElement("div");
  scale.className = "scale";
  scale.innerHTML = '<span>-1</span><span class="bar" aria-hidden="true"></span><span>1</span><span class="muted">cosine</span>';
  wrap.append(scale);
  return wrap;
}

$("sim-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const texts = $("sim-texts").value.split("\n").map((t) => t.trim()).filter(Boolean);
    if (texts.length < 2) throw new Error("give at least two sentences, one per line");
    const models = [$("sim-model-a").value, $("sim-model-b").value].filter(Boolean);
    if (!models.length) throw new Error("no model installed: pull one on the Models tab");
    const out = $("sim-out");
    out.textContent = "";
    out.setAttribute("aria-busy", "true");
    try {
      const results = await Promise.all(models.map((m) => postJSON("/api/embed", { model: m, input: texts })));
      results.forEach((r, k) => out.append(matrixTable(models[k], texts, r.embeddings)));
    } finally {
      out.removeAttribute("aria-busy");
    }
  });
});
onShow.similarity = fillModelSelects;

// ---- search ----------------------------------------------------------------------------------

async function fillCollections() {
  const { collections } = await getJSON("/api/collections");
  const sel = $("search-collection");
  const keep = sel.value;
  sel.textContent = "";
  for (const c of collections) sel.append(new Option(`${c.name} (${c.documents} docs, ${c.model})`, c.name));
  if (keep) sel.value = keep;
  $("search-ask").hidden = !config.llm;
}
onShow.search = fillCollections;

function searchBody() {
  const query = $("search-query").value.trim();
  if (!query) throw new Error("type a query");
  const name = $("search-collection").value;
  if (!name) throw new Error("no collection: create one with `embedserve index add` or the API");
  const body = { query, top_k: Number($("search-k").value) || 5 };
  const where = $("search-where").value.trim();
  if (where) {
    try { body.where = JSON.parse(where); } catch (err) { throw new Error("the filter is not valid JSON: " + err.message); }
  }
  return [name, body];
}

function highlight(el, text, query) {
  const words = query.toLowerCase().split(/\W+/).filter((w) => w.length > 2);
  if (!words.length) { el.textContent = text; return; }
  const re = new RegExp("(" + words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|") + ")", "gi");
  let last = 0;
  for (const m of text.matchAll(re)) {
    el.append(text.slice(last, m.index));
    const mark = document.createElement("mark");
    mark.textContent = m[0];
    el.append(mark);
    last = m.index + m[0].length;
  }
  el.append(text.slice(last));
}

function renderHits(hits, query) {
  const list = $("hits");
  list.textContent = "";
  if (!hits.length) { list.textContent = "No hits."; return; }
  for (const h of hits) {
    const li = document.createElement("li");
    li.className = "hit";
    li.dataset.id = h.id;
    const head = document.createElement("div");
    head.className = "hit-head";
    const score = document.createElement("span");
    score.className = "hit-score"; score.textContent = h.score.toFixed(4);
    const id = document.createElement("span");
    id.textContent = "id " + h.id;
    head.append(score, id);
    if (h.chunk) {
      const where = document.createElement("span");
      where.textContent = `chunk ${h.chunk.index}, chars ${h.chunk.start}-${h.chunk.end}`;
      head.append(where);
    }
    const chunk = document.createElement("div");
    chunk.className = "chunk";
    highlight(chunk, h.text || "", query);
    li.append(head, chunk);
    if (h.metadata && Object.keys(h.metadata).length) {
      const meta = document.createElement("div");
      meta.className = "meta"; meta.textContent = JSON.stringify(h.metadata);
      li.append(meta);
    }
    list.append(li);
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const [name, body] = searchBody();
    const res = await postJSON(`/api/collections/${encodeURIComponent(name)}/query`, body);
    renderHits(res.results, body.query);
  });
});

$("search-ask").addEventListener("click", () => guarded(async () => {
  const [name, body] = searchBody();
  const box = $("answer");
  box.hidden = false;
  box.textContent = "";
  await stream(`/api/collections/${encodeURIComponent(name)}/ask`,
    { question: body.query, top_k: body.top_k, where: body.where, stream: true },
    (line) => {
      if (line.response) box.textContent += line.response;
      if (line.done && line.sources) renderHits(line.sources.map((s) => Object.assign({ score: s.score || 0 }, s)), body.query);
    });
}));

// ---- models ----------------------------------------------------------------------------------

function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

async function refreshModels() {
  const [models, ps] = await Promise.all([fillModelSelects(), getJSON("/api/ps")]);
  const running = new Map(ps.models.map((m) => [m.name, m]));
  const body = $("models-table").tBodies[0];
  body.textContent = "";
  for (const m of models) {
    const row = body.insertRow();
    row.dataset.name = m.name;
    const live = running.get(m.name);
    const d = m.details || {};
    for (const v of [m.name, bytes(m.size), d.quantization_level || "", d.embedding_length || "",
                     live ? "yes" : "no", live ? new Date(live.expires_at).toLocaleString() : ""]) {
      row.insertCell().textContent = String(v);
    }
  }
}
onShow.models = refreshModels;

$("pull-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(async () => {
    const name = $("pull-name").value.trim();
    if (!name) throw new Error("type a model name, e.g. all-minilm");
    const bar = $("pull-progress"), status = $("pull-status");
    bar.hidden = false; bar.value = 0; bar.max = 1;
    status.textContent = "starting...";
    try {
      await stream("/api/pull", { model: name, stream: true }, (line) => {
        status.textContent = line.status;
        if (line.total) { bar.max = line.total; bar.value = line.completed || 0; }
        if (line.status === "success") { bar.max = 1; bar.value = 1; }
      });
    } catch (err) {
      status.textContent = "failed";
      throw err;
    }
    await refreshModels();
  });
});

// ---- server ----------------------------------------------------------------------------------

const WINDOW_S = 300, EVERY_MS = 2000;
const series = { rate: [], queue: [], batch: [] };
let last = null, timer = null;

function parseMetrics(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    sums[m[1]] = (sums[m[1]] || 0) + Number(m[3]);
  }
  return sums;
}

function draw(canvas, points, label) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...points.map((p) => p[1]));
  ctx.fillStyle = "#5b6470";
  ctx.font = "11px system-ui";
  ctx.fillText(max.toFixed(max < 10 ? 1 : 0), 4, 12);
  ctx.strokeStyle = "#0b5cad";
  ctx.lineWidth = 2;
  ctx.beginPath();
  const now = Date.now() / 1000;
  points.forEach(([t, v], i) => {
    const x = w - ((now - t) / WINDOW_S) * w;
    const y = h - 4 - (v / max) * (h - 20);
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
  canvas.setAttribute("aria-label", label);
}

async function sample() {
  const text = await (await api("GET", "/metrics")).text();
  const m = parseMetrics(text);
  const t = Date.now() / 1000;
  const cur = { t, inputs: m.embedserve_inputs_total || 0, bsum: m.embedserve_batch_size_sum || 0,
                bcount: m.embedserve_batch_size_count || 0, queue: m.embedserve_queue_depth || 0 };
  if (last) {
    const dt = Math.max(1e-3, cur.t - last.t);
    const db = cur.bcount - last.bcount;
    series.rate.push([t, Math.max(0, (cur.inputs - last.inputs) / dt)]);
    series.batch.push([t, db > 0 ? (cur.bsum - last.bsum) / db : 0]);
  }
  series.queue.push([t, cur.queue]);
  last = cur;
  for (const k of Object.keys(series)) series[k] = series[k].filter((p) => t - p[0] <= WINDOW_S);
  const latest = (k) => (series[k].length ? series[k][series[k].length - 1][1] : 0);
  $("stat-rate").textContent = latest("rate").toFixed(1);
  $("stat-queue").textContent = String(latest("queue"));
  $("stat-batch").textContent = latest("batch").toFixed(1);
  draw($("chart-rate"), series.rate, `texts per second, now ${latest("rate").toFixed(1)}`);
  draw($("chart-queue"), series.queue, `queue depth, now ${latest("queue")}`);
  draw($("chart-batch"), series.batch, `mean batch size, now ${latest("batch").toFixed(1)}`);
}

onShow.server = async () => {
  if (timer) return;
  await sample();
  timer = setInterval(() => {
    if ($("panel-server").hidden) { clearInterval(timer); timer = null; return; }
    sample().catch(showError);
  }, EVERY_MS);
};

// ---- key and start-up ------------------------------------------------------------------------

$("savekey").addEventListener("click", () => {
  const key = $("apikey").value.trim();
  if (key) sessionStorage.setItem(KEY, key);
  $("apikey").value = "";
  select(tabs.find((t) => t.getAttribute("aria-selected") === "true"), false);
});
$("forgetkey").addEventListener("click", () => { sessionStorage.removeItem(KEY); showError(null); });

(async () => {
  try { config = await getJSON("config.json"); } catch (err) { showError(err); }
  $("version").textContent = config.version ? "v" + config.version : "";
  $("keybox").hidden = !config.auth;
  if (config.auth && !sessionStorage.getItem(KEY)) {
    showError(new Error("this server needs an API key: paste it above (kept only in this tab)"));
    $("apikey").focus();
    return;
  }
  select(tabs[0], false);
})();
