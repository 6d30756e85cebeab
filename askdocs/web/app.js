// askdocs web page: plain JS; marked and DOMPurify are vendored beside it.  Text from documents is only
// ever set with textContent or text nodes; answers are Markdown, rendered with raw HTML escaped and
// sanitised by DOMPurify (see AnswerWriter).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "askdocs-key";
let apiKey = localStorage.getItem(KEY) || "";
let chat = [];  // the conversation so far, sent as `history`

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

const HINT = $("hint").textContent;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// ------------------------------------------------------------------ API

function askForKey(message) {
  $("key-form").hidden = false;
  $("key-status").textContent = message;
  $("key").focus();
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) {
    const wrong = Boolean(apiKey);
    askForKey(wrong ? "That key was refused." : "");
    throw new Error(wrong ? "The API key was refused: enter the right one at the top of the page." : "This server needs an API key: enter it at the top of the page.");
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { message = (await res.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return res;
}

async function loadInfo() {
  try {
    const info = await (await api("/api/info")).json();
    const short = (name) => String(name || "").split("/").pop();
    $("info").textContent = `${info.collection}: ${plural(info.documents, "document")}, ` +
      `${plural(info.chunks, "chunk")} · ${short(info.llm)}`;
    $("info").title = `embedding model ${info.embed_model}, LLM ${info.llm}`;
    $("hint").textContent = info.documents ? HINT : "Nothing is indexed yet: add documents in the Documents view.";
  } catch (e) {
    $("info").textContent = e.message;
  }
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  apiKey = $("key").value.trim();
  localStorage.setItem(KEY, apiKey);
  $("key").value = "";
  $("key-form").hidden = true;
  loadInfo();
  if (!$("view-docs").hidden) loadDocuments();
  $(($("view-docs").hidden ? "question" : "files")).focus();
});

// ------------------------------------------------------------------ views

function show(view, focus = true) {
  const ask = view === "ask";
  $("view-ask").hidden = !ask;
  $("view-docs").hidden = ask;
  $("tab-ask").setAttribute("aria-pressed", String(ask));
  $("tab-docs").setAttribute("aria-pressed", String(!ask));
  history.replaceState(null, "", ask ? location.pathname + location.search : "#documents");
  if (!ask) {
    $("panel").hidden = true;
    document.body.classList.remove("with-panel");
    loadDocuments();
  }
  if (focus) $(ask ? "question" : "files").focus();
}
$("tab-ask").addEventListener("click", () => show("ask"));
$("tab-docs").addEventListener("click", () => show("docs"));

// ------------------------------------------------------------------ the passage panel

let lastFocus = null;
function openPassage(ctx) {
  lastFocus = document.activeElement;
  $("panel-title").textContent = `[${ctx.n}] ${ctx.source}`;
  const score = typeof ctx.score === "number" ? ` · score ${ctx.score.toFixed(3)}` : "";
  $("panel-where").textContent = `${ctx.section || "(no section)"}${score}`;
  $("panel-text").textContent = ctx.text;
  $("panel").hidden = false;
  document.body.classList.add("with-panel");
  $("panel").scrollTop = 0;
  $("panel").focus();
}
function closePassage() {
  $("panel").hidden = true;
  document.body.classList.remove("with-panel");
  if (lastFocus && lastFocus.isConnected) lastFocus.focus();
}
$("panel-close").addEventListener("click", closePassage);
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !$("panel").hidden) { ev.preventDefault(); closePassage(); }
});

// ------------------------------------------------------------------ asking

function citeButton(marker, ctx) {
  const b = el("button", { type: "button", className: "cite", textContent: marker, title: `${ctx.source} — read the passage`,
    onclick: () => openPassage(ctx) });
  b.setAttribute("aria-label", `Source ${ctx.n}: ${ctx.source}`);
  return b;
}

// Answers are Markdown (lists, code, tables): marked renders them, with any raw HTML in the answer
// escaped to text, and DOMPurify sanitises the result before it reaches the page.  Then complete
// "[n]" markers of known passages, outside code, become buttons.  While the answer streams, the whole
// text so far is rendered again at most once per frame, so a marker cut between two pieces is
// complete on the next render.
const escapeHtml = (t) => t.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const md = new marked.Marked({ gfm: true, breaks: false });
md.use({ renderer: { html: (token) => escapeHtml(token.text || token.raw || "") } });

function renderMarkdown(text) {
  return DOMPurify.sanitize(md.parse(text), { USE_PROFILES: { html: true }, FORBID_TAGS: ["img", "style", "form", "input"] });
}

class AnswerWriter {
  constructor(node) { this.node = node; this.byN = new Map(); this.text = ""; this.frame = 0; this.unsupported = []; }
  setContexts(contexts) { this.byN = new Map(contexts.map((c) => [c.n, c])); this.schedule(); }
  write(piece) { this.text += piece; this.schedule(); }
  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }
  // Sentences the server found unsupported by the passage they cite (askdocs.support) are dimmed and
  // marked after each render of the Markdown; a sentence not found in one block of the page stays plain.
  markUnsupported(fullText, sentences) {
    this.unsupported = (sentences || []).filter((s) => s.supported === false && s.text);
    if (this.unsupported.length) this.render();
  }
  wrapSentence(s) {
    for (const block of this.node.querySelectorAll("p, li, td, th, blockquote, h1, h2, h3, h4, h5, h6")) {
      if (block.querySelector("p, li, blockquote")) continue;  // the innermost block holds the sentence
      const texts = [];
      let all = "";
      const walker = document.createTreeWalker(block, NodeFilter.SHOW_TEXT);
      while (walker.nextNode()) { texts.push([walker.currentNode, all.length]); all += walker.currentNode.data; }
      let needle = s.text.trim();
      let i = all.indexOf(needle);
      if (i < 0) { needle = needle.replace(/\*\*|__|`/g, ""); i = all.indexOf(needle); }  // Markdown emphasis/code rendered
      if (i < 0 || !needle) continue;
      const j = i + needle.length;
      const start = texts.find(([n, off]) => i >= off && i < off + n.data.length);
      const end = texts.find(([n, off]) => j > off && j <= off + n.data.length);
      const range = document.createRange();
      range.setStart(start[0], i - start[1]);
      range.setEnd(end[0], j - end[1]);
      const span = el("span", { className: "unsupported", title: `Not supported by the cited passage: ${s.reason || ""}` });
      span.append(el("span", { className: "marker", textContent: "✗ " }));
      span.setAttribute("aria-label", "unsupported sentence");
      span.append(range.extractContents());  // citation buttons inside move along, handlers kept
      range.insertNode(span);
      return;
    }
  }
  finish(fullText) {
    // the final answer is authoritative (the server may trim it)
    this.text = fullText;
    if (this.frame) { cancelAnimationFrame(this.frame); this.frame = 0; }
    this.render();
  }
  render() {
    const focused = [...this.node.querySelectorAll(".cite")].indexOf(document.activeElement);
    this.node.innerHTML = renderMarkdown(this.text);
    const walker = document.createTreeWalker(this.node, NodeFilter.SHOW_TEXT, {
      acceptNode: (n) => n.parentElement.closest("code, pre") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    for (const t of nodes) {
      const parts = [];
      let last = 0;
      for (const m of t.data.matchAll(/\[(\d{1,3})\]/g)) {
        const ctx = this.byN.get(Number(m[1]));
        if (!ctx) continue;
        parts.push(t.data.slice(last, m.index), citeButton(m[0], ctx));
        last = m.index + m[0].length;
      }
      if (parts.length) t.replaceWith(...parts, t.data.slice(last));
    }
    for (const s of this.unsupported) this.wrapSentence(s);
    if (focused >= 0) this.node.querySelectorAll(".cite")[focused]?.focus();
  }
}

function renderSources(list, contexts, cited) {
  list.replaceChildren();
  // best first: [1] is the most relevant passage, the same [n] the answer cites (sorted by n, not score,
  // so a conversation kept from before still lists in its own numbering)
  for (const c of [...contexts].sort((a, b) => a.n - b.n)) {
    const b = el("button", { type: "button", onclick: () => openPassage(c) },
      el("span", { className: "n", textContent: `[${c.n}]` }), " ",
      el("span", { className: "src", textContent: c.source }));
    if (c.section) b.append(el("span", { className: "sec", textContent: ` › ${c.section}` }));
    if (cited.has(c.n)) {
      b.classList.add("cited");
      b.append(el("span", { className: "badge", textContent: "cited" }));
    }
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
    buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
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

function askBody(question) {
  const body = { question, history: chat };
  const mode = $("mode").value;
  const k = parseInt($("k").value, 10);
  if (mode) body.mode = mode;
  if (k > 0) body.k = k;
  return JSON.stringify(body);
}

// The conversation survives a reload: each finished turn is kept in localStorage and drawn again.
const CHAT_KEY = "askdocs-chat";
let turns = [];
try { turns = JSON.parse(localStorage.getItem(CHAT_KEY) || "[]"); } catch (_) { turns = []; }
function saveTurns() {
  try { localStorage.setItem(CHAT_KEY, JSON.stringify(turns.slice(-20))); } catch (_) { /* full or disabled */ }
}

function buildTurn(question) {
  const answerNode = el("div", { className: "answer" });
  answerNode.setAttribute("aria-live", "polite");
  const query = el("p", { className: "query muted", hidden: true });
  const note = el("p", { className: "note", hidden: true });
  const meta = el("p", { className: "meta muted" });
  const sourcesList = el("ol", { className: "sources" });
  sourcesList.setAttribute("aria-label", "Sources");
  const heading = el("h2", { className: "q", textContent: question });
  const turn = el("article", { className: "turn" }, heading, query, answerNode, note,
    el("h3", { className: "sources-title", textContent: "Sources" }), sourcesList, meta);
  $("conversation").prepend(turn);
  return { turn, answerNode, query, note, meta, sourcesList, writer: new AnswerWriter(answerNode) };
}

function showQuery(t, q, question) {
  if (q && q !== question) { t.query.textContent = `Searched for: ${q}`; t.query.hidden = false; }
}
function showNote(t, text) { t.note.textContent = text; t.note.hidden = !text; }
const CUT = "Cut off at the answer length limit (max_tokens): the answer is incomplete.";
const STOPPED = "Stopped: the answer is incomplete.";

function metaLine(msg) {
  const t = msg.timings || {};
  const seconds = Object.values(t).reduce((a, b) => a + (Number(b) || 0), 0);
  const tokens = msg.usage && msg.usage.completion_tokens;
  return [seconds ? `${seconds.toFixed(1)} s` : "", tokens ? plural(tokens, "token") : ""].filter(Boolean).join(" · ");
}

function restoreTurns() {
  for (const saved of turns) {
    const t = buildTurn(saved.question);
    showQuery(t, saved.query, saved.question);
    t.writer.setContexts(saved.contexts || []);
    t.writer.finish(saved.answer || "");
    renderSources(t.sourcesList, saved.contexts || [], new Set(saved.cited || []));
    showNote(t, saved.note || "");
    t.meta.textContent = saved.meta || "";
    chat.push({ role: "user", content: saved.question }, { role: "assistant", content: saved.answer || "" });
  }
  if (turns.length) $("hint").hidden = true;
}

let controller = null;
$("stop-button").addEventListener("click", () => { if (controller) controller.abort(); });

$("ask-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const question = $("question").value.trim();
  if (!question || $("ask-button").disabled) return;
  $("question").value = "";
  $("ask-button").disabled = true;
  $("stop-button").hidden = false;
  $("hint").hidden = true;
  controller = new AbortController();

  const t = buildTurn(question);
  t.answerNode.classList.add("pending");
  t.answerNode.setAttribute("aria-busy", "true");
  let contexts = [];
  let answered = false;
  let query = "";
  try {
    const res = await api("/api/ask", { method: "POST", headers: { "Content-Type": "application/json" },
      body: askBody(question), signal: controller.signal });
    for await (const { event, data } of sse(res)) {
      const msg = JSON.parse(data);
      if (event === "sources") {
        contexts = msg.contexts;
        query = msg.query || "";
        t.writer.setContexts(contexts);
        renderSources(t.sourcesList, contexts, new Set());
        showQuery(t, query, question);
        if (!contexts.length) t.meta.textContent = "No passage matched.";
      } else if (event === "token") {
        t.writer.write(msg.text);
      } else if (event === "done") {
        const text = msg.answer || "";
        if (msg.contexts) { contexts = msg.contexts; t.writer.setContexts(contexts); }
        t.writer.finish(text);
        t.writer.markUnsupported(text, msg.sentences);
        const cited = (msg.citations || []).map((c) => c.n);
        let note = "";
        if (!text) note = "(no answer generated: read the sources)";
        else if (msg.finish_reason === "length") note = CUT;
        showNote(t, note);
        renderSources(t.sourcesList, contexts, new Set(cited));
        t.meta.textContent = metaLine(msg);
        chat.push({ role: "user", content: question }, { role: "assistant", content: text });
        turns.push({ question, query, answer: text, contexts, cited, note, meta: t.meta.textContent });
        saveTurns();
        answered = true;
      } else if (event === "error") {
        throw new Error(msg.message);
      }
    }
    if (!answered) throw new Error("The answer was cut off.");
  } catch (e) {
    if (e.name === "AbortError") {
      t.writer.finish(t.writer.text);
      showNote(t, STOPPED);
      const text = t.writer.text;
      chat.push({ role: "user", content: question }, { role: "assistant", content: text });
      turns.push({ question, query, answer: text, contexts, cited: [], note: STOPPED, meta: "" });
      saveTurns();
    } else {
      t.answerNode.append(el("p", { className: "error", textContent: e.message }));
    }
  } finally {
    controller = null;
    t.answerNode.classList.remove("pending");
    t.answerNode.setAttribute("aria-busy", "false");
    $("ask-button").disabled = false;
    $("stop-button").hidden = true;
    if (!t.turn.contains(document.activeElement) && $("panel").hidden) $("question").focus();
  }
});

$("new-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  chat = [];
  turns = [];
  saveTurns();
  $("conversation").replaceChildren();
  $("panel").hidden = true;
  document.body.classList.remove("with-panel");
  $("hint").hidden = false;
  $("question").focus();
});

// ------------------------------------------------------------------ documents

async function loadDocuments() {
  const body = $("docs-body");
  try {
    const { documents } = await (await api("/api/documents")).json();
    body.replaceChildren();
    $("docs-caption").textContent = `Indexed documents (${documents.length})`;
    if (!documents.length) {
      body.append(el("tr", {}, el("td", { colSpan: 4, className: "muted", textContent: "No documents yet: upload some above." })));
    }
    for (const d of documents) {
      const del = el("button", { type: "button", className: "danger", textContent: "Delete",
        onclick: () => deleteDocument(d.source, del) });
      del.setAttribute("aria-label", `Delete ${d.source}`);
      // break long paths after a "/" rather than between any two letters
      const src = el("td", { className: "src" });
      d.source.split("/").forEach((part, i, all) => src.append(part + (i < all.length - 1 ? "/" : ""), el("wbr")));
      if (d.complete === false) src.append(el("span", { className: "badge warn", textContent: "incomplete", title: "ingest was interrupted; ingest it again" }));
      body.append(el("tr", {}, src, el("td", { className: "title", textContent: d.title || "" }),
        el("td", { className: "num chunks" }, String(d.chunks),
          el("span", { className: "unit", textContent: d.chunks === 1 ? " chunk" : " chunks" })), el("td", { className: "num actions" }, del)));
    }
  } catch (e) {
    $("upload-status").textContent = e.message;
  }
}

async function deleteDocument(source, button) {
  if (!confirm(`Remove ${source} from the index?`)) return;
  button.disabled = true;
  try {
    const r = await (await api(`/api/documents/${encodeURIComponent(source)}`, { method: "DELETE" })).json();
    $("upload-status").textContent = `Removed ${r.deleted} (${plural(r.chunks, "chunk")}).`;
  } catch (e) {
    $("upload-status").textContent = e.message;
  }
  await loadDocuments();
  loadInfo();
  $("files").focus();
}

function jobSummary(j) {
  const r = j.report;
  let s = `Ingest ${j.state}: ${j.files_done}/${plural(j.files_total, "file")}, ${plural(j.chunks, "chunk")}`;
  if (r) s += ` (${r.added} added, ${r.updated} updated, ${r.unchanged} unchanged, ${r.failed} failed)`;
  const fails = (j.failures || (r && r.failures) || []).map((f) => `${f.path}: ${f.reason}`).join("; ");
  const refused = (j.rejected || []).map((f) => f.reason).join("; ");
  if (j.error) s += ` — ${j.error}`;
  if (fails) s += ` — failed: ${fails}`;
  if (refused) s += ` — not uploaded: ${refused}`;
  return s;
}

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const files = $("files").files;
  if (!files.length) { $("upload-status").textContent = "Choose files first."; $("files").focus(); return; }
  const form = new FormData();
  for (const f of files) form.append("files", f);
  const bar = $("upload-progress");
  $("upload-button").disabled = true;
  $("upload-status").textContent = `Uploading ${plural(files.length, "file")}…`;
  try {
    const { job } = await (await api("/api/ingest", { method: "POST", body: form })).json();  // rejected files come back in the job
    bar.hidden = false;
    bar.removeAttribute("value");  // indeterminate until the job knows its files
    for (;;) {
      const j = await (await api(`/api/jobs/${encodeURIComponent(job)}`)).json();
      if (j.files_total > 0) { bar.max = j.files_total; bar.value = j.files_done; }
      $("upload-status").textContent = jobSummary(j);
      if (j.state === "done" || j.state === "failed") break;
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

// ------------------------------------------------------------------ start

restoreTurns();
loadInfo();
show(location.hash === "#documents" ? "docs" : "ask");
