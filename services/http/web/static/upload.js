// The upload page: a file dropped or picked goes up with tus 1.0 (/v1/uploads) in pieces,
// resuming after a dropped connection or a reload (the upload's URL is kept per file in
// localStorage); a server without tus gets one POST /v1/imports instead. Then the job's page.
import { api, errorOf } from "./common.js";

const TUS = "1.0.0";
const PIECE = 4 * 1024 * 1024;
const RETRIES = [1000, 3000, 5000, 10000, 20000];
const form = document.getElementById("upload");
const zone = document.getElementById("drop-zone");
const picker = document.getElementById("file");
const bar = document.getElementById("bar");
const percent = document.getElementById("percent");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
let busy = false;

const fail = (message) => { errorLine.textContent = message; statusLine.textContent = ""; busy = false; zone.classList.remove("busy"); };
const say = (message) => { statusLine.textContent = message; };
const show = (sent, total) => {
  const p = total ? Math.floor((100 * sent) / total) : 100;
  bar.value = p;
  percent.textContent = `${p}%`;
};
const mib = (n) => `${Math.round(n / 1048576)} MB`;
const b64 = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function looksLikeExport(file) {
  const head = new Uint8Array(await file.slice(0, 64).arrayBuffer());
  if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return true;  // a zip
  const text = new TextDecoder().decode(head).replace(/^\uFEFF/, "").trimStart();
  return text.startsWith("[") || text.startsWith("{");
}

async function start(file) {
  if (busy || !file) return;
  errorLine.textContent = "";
  if (!/\.(zip|json)$/i.test(file.name) || !(await looksLikeExport(file))) {
    return fail(`${file.name} is not a ChatGPT or claude.ai export: choose the .zip you downloaded, or its conversations.json.`);
  }
  if (file.size === 0) return fail(`${file.name} is empty.`);
  busy = true;
  zone.classList.add("busy");
  document.getElementById("progress").hidden = false;
  document.getElementById("file-name").textContent = file.name;
  show(0, file.size);
  say("Uploading…");
  const options = await api("/v1/uploads", { method: "OPTIONS", headers: { "Tus-Resumable": TUS } }).catch(() => null);
  if (options && options.ok && options.headers.get("Tus-Version")) return resumable(file, options);
  return single(file);
}

// tus: create (or find the upload this file already began), then PATCH piece by piece.
async function resumable(file, options) {
  const max = Number(options.headers.get("Tus-Max-Size") || 0);
  if (max && file.size > max) return fail(`${file.name} is ${mib(file.size)}: larger than this server takes (${mib(max)}).`);
  const key = `soulprint-upload:${file.name}:${file.size}:${file.lastModified}`;
  let url = localStorage.getItem(key);
  let offset = url ? await offsetOf(url) : null;
  if (offset === null) {
    const created = await api("/v1/uploads", { method: "POST", headers: {
      "Tus-Resumable": TUS, "Upload-Length": String(file.size),
      "Upload-Metadata": `filename ${b64(file.name)},filetype ${b64(file.type || "application/octet-stream")}` } });
    if (!created.ok) return fail(await errorOf(created));
    url = new URL(created.headers.get("Location"), location.href).pathname;
    localStorage.setItem(key, url);
    offset = 0;
  }
  let attempt = 0;
  while (true) {
    show(offset, file.size);
    let response;
    try {
      response = await api(url, { method: "PATCH", body: file.slice(offset, offset + PIECE), headers: {
        "Tus-Resumable": TUS, "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" } });
    } catch (_) {
      response = null;  // the connection dropped: ask where the server is, then go on from there
    }
    if (response && response.ok) {
      attempt = 0;
      offset = Number(response.headers.get("Upload-Offset"));
      const job = response.headers.get("Soulprint-Job-Id");
      if (job) { localStorage.removeItem(key); return done(job); }
      if (offset >= file.size) { const j = await jobOf(url); if (j) { localStorage.removeItem(key); return done(j); } }
      continue;
    }
    if (response && response.status < 500 && response.status !== 409 && response.status !== 423) {
      localStorage.removeItem(key);
      return failed(response);
    }
    if (attempt >= RETRIES.length) return fail("The connection keeps dropping. Try again later: the upload resumes where it stopped.");
    say("Connection lost, resuming…");
    await sleep(RETRIES[attempt++]);
    const at = await offsetOf(url);
    if (at === null) { localStorage.removeItem(key); return fail("The server no longer has this upload. Drop the file again to start over."); }
    offset = at;
    say("Uploading…");
  }
}

async function offsetOf(url) {
  const r = await api(url, { method: "HEAD", headers: { "Tus-Resumable": TUS } }).catch(() => null);
  return r && r.ok ? Number(r.headers.get("Upload-Offset")) : null;
}

async function jobOf(url) {
  const r = await api(url, { method: "HEAD", headers: { "Tus-Resumable": TUS } }).catch(() => null);
  return r && r.ok ? r.headers.get("Soulprint-Job-Id") : null;
}

// No tus on this server: one streamed POST, with the browser's upload progress.
function single(file) {
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/imports");
  xhr.setRequestHeader("X-Soulprint-Web", "1");
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.upload.onprogress = (e) => show(e.loaded, e.total || file.size);
  xhr.onerror = () => fail("The upload failed: the connection dropped. Try again.");
  xhr.onload = () => {
    const body = (() => { try { return JSON.parse(xhr.responseText); } catch (_) { return null; } })();
    if (xhr.status === 202 && body?.job_id) return done(body.job_id);
    if (xhr.status === 409 && body?.error?.job_id) return done(body.error.job_id, "This export is already being imported.");
    fail(body?.error?.message || `The server answered ${xhr.status}.`);
  };
  xhr.send(file);
}

async function failed(response) {
  let body = null;
  try { body = await response.clone().json(); } catch (_) { /* not JSON */ }
  if (response.status === 409 && body?.error?.job_id) return done(body.error.job_id, "This export is already being imported.");
  if (response.status === 413) return fail(body?.error?.message || "That file is larger than this server takes.");
  return fail(body?.error?.message || await errorOf(response));
}

function done(job, note = "Uploaded.") {
  show(1, 1);
  say(`${note} Opening its progress…`);
  location.assign(`/app/jobs/${encodeURIComponent(job)}`);
}

picker.addEventListener("change", () => start(picker.files[0]));
form.addEventListener("submit", (e) => e.preventDefault());
for (const type of ["dragenter", "dragover"]) {
  zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  zone.addEventListener(type, () => zone.classList.remove("over"));
}
zone.addEventListener("drop", (e) => { e.preventDefault(); start(e.dataTransfer.files[0]); });
