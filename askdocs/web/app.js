// askdocs web page: plain JS, no dependencies.  Document text is only ever set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let apiKey = localStorage.getItem("askdocs-key") || "";
let history = [];

function headers(extra = {}) {
  return apiKey ? { ...extra, Authorization: `Bearer ${apiKey}` } : extra;
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (res.status === 401) {
    $("key-form").hidden = false;
    $("key").focus();
    throw new Error("This server needs an API key.");
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { message = (await res.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return res;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

async function loadInfo() {
  try {
    const info = await (await api("/api/info")).json();
    $("info").textContent = `${info.collection}: ${info.documents} documents, ${info.chunks} chunks · ${info.llm}`;
  } catch (e) {
    $("info").textContent = e.message;
  }
}

// ------------------------------------------------------------------ views

function show(view) {
  const ask = view === "ask";
  $("view-ask").hidden = !ask;
  $("view-docs").hidden = ask;
  $("tab-ask").setAttribute("aria-pressed", String(ask));
  $("tab-docs").setAttribute("aria-pressed", String(!ask));
  if (ask) $("question").focus(); else loadDocuments();
}
$("tab-ask").addEventListener("click", () => show("ask"));
$("tab-docs").addEventListener("click", () => show("docs"));

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  apiKey = $("key").value.trim();
  localStorage.setItem("askdocs-key", apiKey);
  $("key-form").hidden = true;
  loadInfo();
});

// ------------------------------------------------------------------ the passage panel

let lastFocus = null;
function openPassage(ctx) {
  lastFocus = document.activeElement;
  $("panel-title").textContent = `[${ctx.n}] ${ctx.source}`;
  $("panel-where").textContent = `${ctx.section || "(no section)"} · score ${ctx.score.toFixed(3)}`;
  $("panel-text").textContent = ctx.text;
  $("panel").hidden = false;
  $("panel").focus();
}
function closePassage() {
  $("panel").hidden = true;
  if (lastFocus) lastFocus.focus();
}
$("panel-close").addEventListener("click", closePassage);
document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("panel").hidden) closePassage(); });

// ------------------------------------------------------------------ asking

function renderAnswer(node, text, contexts) {
  // "[2]" markers become buttons that open the passage; everything else stays text.
  node.replaceChildren();
  const byN = new Map(contexts.map((c) => [c.n, c]));
  let last = 0;
  for (const m of text.matchAll(/\[(\d{1,3})\]/g)) {
    const ctx = byN.get(Number(m[1]));
    if (!ctx) continue;
    node.append(text.slice(last, m.index));
    node.append(el("button", { type: "button", className: "cite", textContent: m[0], title: ctx.source,
      onclick: () => openPassage(ctx) }));
    last = m.index + m[0].length;
  }
  node.append(text.slice(last));
}

function renderSources(list, contexts, cited) {
  list.replaceChildren();
  // most relevant first for reading; numbers stay those of the prompt and the answer
  for (const c of [...contexts].reverse()) {
    const label = `[${c.n}] ${c.source}${c.section ? " › " + c.section : ""}`;
    const b = el("button", { type: "button", textContent: label, onclick: () => openPassage(c) });
    if (cited.has(c.n)) b.classList.add("cited");
    list.append(el("li", {}, b));
  }
}

async function* sse(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

$("ask-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("question").value = "";
  $("ask-button").disabled = true;
  const answerNode = el("div", { className: "answer pending" });
  answerNode.setAttribute("aria-live", "polite");
  const sourcesList = el("ul", { className: "sources" });
  sourcesList.setAttribute("aria-label", "Sources");
  const turn = el("article", { className: "turn" }, el("p", { className: "q", textContent: question }), answerNode, sourcesList);
  $("conversation").prepend(turn);
  let text = "";
  let contexts = [];
  try {
    const res = await api("/api/ask", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question, history }) });
    for await (const { event, data } of sse(res)) {
      const msg = JSON.parse(data);
      if (event === "sources") {
        contexts = msg.contexts;
        renderSources(sourcesList, contexts, new Set());
      } else if (event === "token") {
        text += msg.text;
        answerNode.textContent = text;
      } else if (event === "done") {
        text = msg.answer;
        renderAnswer(answerNode, text || "(no answer)", contexts);
        renderSources(sourcesList, contexts, new Set(msg.citations.map((c) => c.n)));
        history.push({ role: "user", content: question }, { role: "assistant", content: text });
      } else if (event === "error") {
        throw new Error(msg.message);
      }
    }
  } catch (e) {
    answerNode.append(el("p", { className: "error", textContent: e.message }));
  } finally {
    answerNode.classList.remove("pending");
    $("ask-button").disabled = false;
    $("question").focus();
  }
});

$("new-chat").addEventListener("click", () => {
  history = [];
  $("conversation").replaceChildren();
  $("question").focus();
});

// ------------------------------------------------------------------ documents

async function loadDocuments() {
  const body = $("docs-body");
  try {
    const { documents } = await (await api("/api/documents")).json();
    body.replaceChildren();
    if (!documents.length) body.append(el("tr", {}, el("td", { colSpan: 4, textContent: "No documents yet." })));
    for (const d of documents) {
      const del = el("button", { type: "button", textContent: "Delete", onclick: () => deleteDocument(d.source) });
      del.setAttribute("aria-label", `Delete ${d.source}`);
      body.append(el("tr", {}, el("td", { textContent: d.source }), el("td", { textContent: d.title }),
        el("td", { textContent: String(d.chunks) }), el("td", {}, del)));
    }
  } catch (e) {
    $("upload-status").textContent = e.message;
  }
}

async function deleteDocument(source) {
  if (!confirm(`Remove ${source} from the index?`)) return;
  try {
    const r = await (await api(`/api/documents/${encodeURIComponent(source)}`, { method: "DELETE" })).json();
    $("upload-status").textContent = `Removed ${r.deleted} (${r.chunks} chunks).`;
  } catch (e) {
    $("upload-status").textContent = e.message;
  }
  await loadDocuments();
  loadInfo();
}

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const files = $("files").files;
  if (!files.length) { $("upload-status").textContent = "Choose files first."; return; }
  const form = new FormData();
  for (const f of files) form.append("files", f);
  const bar = $("upload-progress");
  $("upload-button").disabled = true;
  try {
    const { job } = await (await api("/api/ingest", { method: "POST", body: form })).json();
    bar.hidden = false;
    for (;;) {
      const j = await (await api(`/api/jobs/${job}`)).json();
      bar.max = Math.max(j.files_total, 1);
      bar.value = j.files_done;
      $("upload-status").textContent = `Ingest ${j.state}: ${j.files_done}/${j.files_total} files, ${j.chunks} chunks`;
      if (j.state === "done" || j.state === "failed") {
        const fails = (j.failures || []).map((f) => `${f.path}: ${f.reason}`).join("; ");
        if (j.error) $("upload-status").textContent += ` — ${j.error}`;
        if (fails) $("upload-status").textContent += ` — failed: ${fails}`;
        break;
      }
      await new Promise((r) => setTimeout(r, 400));
    }
  } catch (e) {
    $("upload-status").textContent = e.message;
  } finally {
    bar.hidden = true;
    $("upload-button").disabled = false;
    $("files").value = "";
    await loadDocuments();
    loadInfo();
  }
});

loadInfo();
$("question").focus();
