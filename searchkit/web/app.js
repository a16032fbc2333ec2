// The searchkit page: a form over GET /search, an answer panel over POST /ask, a document view over
// GET /documents/{id}. Document text only ever reaches the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("search");
let fields = {};
// The index's own ranking (what `searchkit tune` chose), used when the URL names no mode.
let defaultMode = "dense";

// Control characters (terminal escapes, say) have no business on a page: shown as nothing.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
const clean = (text) => String(text).replace(CONTROL, "");

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = clean(text);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// Filters: one row per condition, written as the command line writes them (year>=2020, lang in en,de).

const CONDITION = /^\s*([^\s=!<>]+)\s*(!=|>=|<=|==|=|>|<)\s*(.*)$/;
const MEMBERSHIP = /^\s*(\S+)\s+in\s+(.*)$/i;

function addFilter(condition) {
  const row = $("filter-row").content.firstElementChild.cloneNode(true);
  const select = row.querySelector(".field");
  for (const [name, kinds] of Object.entries(fields)) {
    const option = el("option", "", kinds.length ? `${name} (${kinds.join(", ")})` : name);
    option.value = name;
    select.append(option);
  }
  if (condition) {
    const member = MEMBERSHIP.exec(condition);
    const match = member ? null : CONDITION.exec(condition);
    const [field, op, value] = member ? [member[1], " in ", member[2]] : match ? [match[1], match[2] === "==" ? "=" : match[2], match[3]] : [null, null, null];
    if (field !== null) {
      if (!(field in fields)) { const option = el("option", "", field); option.value = field; select.append(option); }
      select.value = field;
      row.querySelector(".op").value = op;
      row.querySelector(".value").value = value;
    }
  }
  row.querySelector(".remove").addEventListener("click", () => { row.remove(); submit(); });
  $("filters").append(row);
  return row;
}

function conditions() {
  return [...document.querySelectorAll("#filters .filter")]
    .map((row) => [row.querySelector(".field").value, row.querySelector(".op").value, row.querySelector(".value").value.trim()])
    .filter(([field, , value]) => field && value)
    .map(([field, op, value]) => `${field}${op}${value}`);
}

// Results

function marked(text, highlights) {
  const node = el("p", "snippet");
  let at = 0;
  for (const [start, end] of highlights) {
    if (start < at) continue;
    node.append(clean(text.slice(at, start)), el("mark", "", text.slice(start, end)));
    at = end;
  }
  node.append(clean(text.slice(at)));
  return node;
}

function metadataList(metadata) {
  const list = el("ul", "meta");
  for (const [key, value] of Object.entries(metadata)) {
    const item = el("li");
    item.append(el("span", "key", key), el("span", "", String(value)));
    list.append(item);
  }
  return list;
}

function documentLink(hit) {
  const params = new URLSearchParams({ doc: hit.doc_id, start: hit.start, end: hit.end });
  return `/?${params}`;
}

function renderHits(result, params) {
  const list = $("results");
  list.replaceChildren();
  const n = result.hits.length;
  $("summary").textContent = n ? `${n} hit${n === 1 ? "" : "s"} in ${result.took_ms.toFixed(0)} ms` : "No hits. Try other words, another mode, or fewer filters.";
  for (const hit of result.hits) {
    const item = el("li", "hit");
    item.dataset.docId = hit.doc_id;
    const heading = el("div", "heading");
    const link = el("a", "title", hit.title || hit.doc_id);
    link.href = documentLink(hit);
    heading.append(link, el("span", "score", hit.score.toFixed(3)));
    item.append(heading, el("div", "id", `${hit.doc_id} · chars ${hit.start}–${hit.end}`), marked(hit.snippet, hit.highlights));
    if (Object.keys(hit.metadata).length) item.append(metadataList(hit.metadata));
    list.append(item);
  }
}

// The answer panel: asked at once for questions, on request otherwise.

function renderAnswerPrompt(params) {
  const panel = $("answer");
  const button = el("button", "link", "Find an answer in these results");
  button.type = "button";
  button.addEventListener("click", () => ask(params));
  panel.replaceChildren(button);
  panel.hidden = false;
}

async function ask(params) {
  const panel = $("answer");
  panel.hidden = false;
  panel.replaceChildren(el("p", "muted", "Reading the best passages…"));
  const body = { question: params.get("q"), k: 3, mode: params.get("mode") || defaultMode };
  const where = params.getAll("where");
  if (where.length) body.where = where;
  try {
    const result = await api("/ask", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const best = result.answers[0];
    if (!best) { panel.replaceChildren(el("p", "muted", "No answer found.")); return; }
    const [whole, rest] = best.context.split("«", 2);
    const [answer, tail] = (rest || "").split("»", 2);
    // About 160 characters either side of the answer, cut at spaces, as the command line shows it.
    const before = whole.length > 160 ? "…" + whole.slice(whole.indexOf(" ", whole.length - 160) + 1) : whole;
    const after = (tail || "").length > 160 ? tail.slice(0, tail.lastIndexOf(" ", 160)) + "…" : tail;
    const context = el("p", "context");
    context.append(clean(before || ""), el("mark", "", answer || best.answer), clean(after || ""));
    const source = el("a", "source", best.title || best.doc_id);
    source.href = `/?${new URLSearchParams({ doc: best.doc_id, start: best.start, end: best.end })}`;
    const footer = el("p", "muted");
    footer.append("from ", source, ` · score ${best.score.toFixed(3)}`);
    const alone = !(before || "").trim() && !(after || "").trim();  // the context adds nothing to the answer
    panel.replaceChildren(el("h2", "", "Answer"), el("p", "answer-text", best.answer), ...(alone ? [] : [context]), footer);
  } catch (error) {
    panel.replaceChildren(el("p", "muted", `No answer: ${error.message}`));
  }
}

// The document view: /?doc=ID&start=&end= shows the whole document with the hit's span marked.

async function showDocument(params) {
  const view = $("document");
  $("results").replaceChildren();
  $("summary").textContent = "";
  $("answer").hidden = true;
  try {
    const doc = await api(`/documents/${encodeURIComponent(params.get("doc"))}`);
    const start = Number(params.get("start")), end = Number(params.get("end"));
    const text = el("div", "text");
    if (Number.isInteger(start) && Number.isInteger(end) && end > start && params.has("start")) {
      text.append(clean(doc.text.slice(0, start)), el("mark", "", doc.text.slice(start, end)), clean(doc.text.slice(end)));
    } else {
      text.textContent = clean(doc.text);
    }
    const back = el("a", "link", "← back");
    back.href = "#";
    back.addEventListener("click", (event) => { event.preventDefault(); history.back(); });
    view.replaceChildren(back, el("h1", "", doc.title || doc.doc_id), el("div", "id", `${doc.doc_id} · ${doc.chars.toLocaleString()} characters · ${doc.chunks} chunks`), metadataList(doc.metadata), text);
    view.hidden = false;
    const span = text.querySelector("mark");
    if (span) span.scrollIntoView({ block: "center" });
  } catch (error) {
    showError(error.message);
  }
}

// Navigation: the URL holds the whole search, so a search can be shared as a link.

function paramsFromForm() {
  const params = new URLSearchParams();
  params.set("q", $("q").value.trim());
  params.set("mode", $("mode").value);
  params.set("k", $("k").value || "10");
  if ($("group").checked) params.set("group", "true");
  for (const condition of conditions()) params.append("where", condition);
  return params;
}

function submit() {
  const params = paramsFromForm();
  if (!params.get("q")) return;
  history.pushState(null, "", `/?${params}`);
  render();
}

async function render() {
  const params = new URLSearchParams(location.search);
  showError("");
  $("document").hidden = true;
  if (params.has("doc")) return showDocument(params);
  $("q").value = params.get("q") || "";
  $("mode").value = params.get("mode") || defaultMode;
  $("k").value = params.get("k") || "10";
  $("group").checked = params.get("group") === "true";
  $("filters").replaceChildren();
  for (const condition of params.getAll("where")) addFilter(condition);
  const query = params.get("q");
  if (!query) {
    $("results").replaceChildren();
    $("summary").textContent = "";
    $("answer").hidden = true;
    return;
  }
  document.title = `${query} · searchkit`;
  $("summary").textContent = "Searching…";
  try {
    const result = await api(`/search?${params}`);
    renderHits(result, params);
    if (result.hits.length && /\?\s*$/.test(query)) ask(params);
    else if (result.hits.length) renderAnswerPrompt(params);
    else $("answer").hidden = true;
  } catch (error) {
    $("results").replaceChildren();
    $("summary").textContent = "";
    $("answer").hidden = true;
    showError(error.message);
  }
}

async function start() {
  try {
    const info = await api("/info");
    fields = info.metadata_fields;
    defaultMode = info.config.search.mode;
    const n = info.counts.documents;
    $("status").textContent = `${n.toLocaleString()} document${n === 1 ? "" : "s"} · ${info.config.model.name}`;
  } catch (error) {
    showError(`Cannot reach the index: ${error.message}`);
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("mode").addEventListener("change", submit);
  $("group").addEventListener("change", submit);
  // A filter applies once it has a value; choosing its field first must not drop the half-made row.
  $("filters").addEventListener("change", (event) => {
    const row = event.target.closest(".filter");
    if (row && row.querySelector(".value").value.trim()) submit();
  });
  $("add-filter").addEventListener("click", () => addFilter().querySelector(".value").focus());
  window.addEventListener("popstate", render);
  render();
}

start();
