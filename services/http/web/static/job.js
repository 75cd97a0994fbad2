// The job's page: its stages, live over server-sent events (GET /v1/imports/{id}/events).
// EventSource reconnects by itself after a dropped connection and sends Last-Event-ID, so the
// server resumes after the last status seen; a reload opens the stream again. A stream the server
// refuses for good falls back to asking for the status every few seconds.
import { CSRF, api, errorOf } from "./common.js";

const root = document.getElementById("job");
const job = root.dataset.job;
const summary = document.getElementById("summary");
const failure = document.getElementById("failure");
const ready = document.getElementById("ready");
const POLL_MS = 3000;
const FULL = ["facts", "consolidating", "memory", "sections"];

const ratio = (done, total) => (total ? Math.min(100, Math.round((100 * done) / total)) : 0);
const n = (x) => Number(x || 0).toLocaleString();

// Each stage as {state: waiting|running|done|failed|skipped, percent, detail}.
function stagesOf(s) {
  const c = s.counts || {};
  const fp = s.full_pass || {};
  const emb = s.embedding || {};
  const importOrder = ["queued", "parsing", "chunking", "complete"];
  const at = importOrder.indexOf(s.status);
  const importStage = (name) => {
    const i = importOrder.indexOf(name);
    if (s.status === "failed") return s.stage === name ? "failed" : (at < 0 && s.stage && importOrder.indexOf(s.stage) > i ? "done" : "waiting");
    return at > i ? "done" : at === i ? "running" : "waiting";
  };
  const out = {};
  const parsing = importStage("parsing");
  out.parsing = { state: parsing, percent: parsing === "done" ? 100 : parsing === "running" ? Math.round(s.progress || 0) : 0,
    detail: c.conversations || c.messages ? `${n(c.conversations)} conversations, ${n(c.messages)} messages` : "" };
  const chunking = importStage("chunking");
  const chunks = c.chunks || {};
  out.chunking = { state: chunking, percent: chunking === "done" ? 100 : ratio(c.conversations_chunked, c.conversations),
    detail: c.conversations_chunked ? `${n(c.conversations_chunked)} of ${n(c.conversations)} conversations · ${n((chunks.micro || 0) + (chunks.medium || 0) + (chunks.macro || 0))} passages` : "" };
  const quick = { pending: "waiting", running: "running", ready: "done", failed: "failed" }[s.quick_status] || "waiting";
  out.quick = { state: quick, percent: quick === "done" ? 100 : quick === "running" ? 50 : 0,
    detail: quick === "failed" ? (s.quick_error || "the quick pass failed") : quick === "done" ? "ready to read" : "" };
  const fps = s.full_pass_status;
  const current = FULL.indexOf(fp.stage);
  FULL.forEach((name, i) => {
    let state = "waiting";
    if (fps === "complete") state = "done";
    else if (fps === "skipped") state = "skipped";
    else if (fps === "processing") state = i < current ? "done" : i === current ? "running" : "waiting";
    else if (fps === "failed") state = i < current ? "done" : i === current ? "failed" : "waiting";
    let percent = state === "done" ? 100 : state === "running" ? 50 : 0;
    let detail = "";
    if (name === "facts") {
      if (state === "running") percent = ratio(fp.chunks_extracted, fp.chunks_total);
      if (fp.chunks_total) detail = `${n(fp.chunks_extracted)} of ${n(fp.chunks_total)} passages read · ${n(fp.facts)} facts`;
    }
    if (name === "consolidating" && fp.consolidated_facts) detail = `${n(fp.consolidated_facts)} distinct memories`;
    if (state === "failed") detail = fp.error || "this stage failed";
    if (state === "skipped") detail = "not needed for a small export";
    out[name] = { state, percent, detail };
  });
  const es = { pending: "waiting", processing: "running", complete: "done", skipped: "skipped", failed: "failed" }[s.embedding_status] || "waiting";
  out.embedding = { state: es, percent: es === "done" ? 100 : ratio(s.embedded, emb.total),
    detail: es === "failed" ? (emb.error || "embedding failed") : emb.total ? `${n(s.embedded)} of ${n(emb.total)} passages` : "" };
  return out;
}

const LABELS = { waiting: "waiting", running: "in progress", done: "done", failed: "failed", skipped: "skipped" };

function finished(s) {
  if (s.status === "failed") return true;
  const settled = (x) => ["complete", "skipped", "failed"].includes(x);
  return s.status === "complete" && settled(s.full_pass_status) && settled(s.embedding_status);
}

function render(s) {
  const stages = stagesOf(s);
  for (const li of root.querySelectorAll(".stage")) {
    const st = stages[li.dataset.stage];
    li.dataset.state = st.state;
    li.querySelector(".stage-state").textContent = LABELS[st.state];
    li.querySelector("progress").value = st.percent;
    li.querySelector(".stage-detail").textContent = st.detail;
  }
  if (s.quick_status === "ready") ready.hidden = false;
  if (s.status === "failed") {
    failure.hidden = false;
    failure.textContent = s.error || "The import failed.";
    summary.textContent = "This import stopped.";
  } else if (finished(s)) {
    summary.textContent = "Done: your soulprint is complete.";
    document.getElementById("job-title").textContent = "Your history is read";
    document.getElementById("ready-note").textContent = "Your soulprint is complete, MEMORY included.";
  } else {
    summary.textContent = s.quick_status === "ready" ? "Your first soulprint is ready; the full pass is still reading."
      : s.status === "queued" ? "Waiting to start…" : "Reading your history…";
  }
  root.dataset.done = finished(s) ? "true" : "false";
  return finished(s);
}

async function poll() {
  const r = await api(`/v1/imports/${encodeURIComponent(job)}`).catch(() => null);
  if (r && r.ok) { if (render(await r.json())) return; }
  else if (r && r.status !== 503) { failure.hidden = false; failure.textContent = await errorOf(r); return; }
  setTimeout(poll, POLL_MS);
}

const stream = new EventSource(`/v1/imports/${encodeURIComponent(job)}/events?csrf=${encodeURIComponent(CSRF)}`);
stream.addEventListener("status", (e) => { if (render(JSON.parse(e.data))) stream.close(); });
stream.onerror = () => { if (stream.readyState === EventSource.CLOSED) poll(); };
