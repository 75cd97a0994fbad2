// The chat page: the conversation goes to POST /v1/chat/completions (the query service's
// OpenAI-compatible API) with stream: true; the answer's text is shown as its pieces arrive
// and its sources (the soulprint extension of the last chunk) open on a click.
import { api, errorOf, when, element } from "./common.js";

const root = document.querySelector(".chat");
const log = document.getElementById("log");
const form = document.getElementById("ask");
const box = document.getElementById("message");
const send = document.getElementById("send");
const errorLine = document.getElementById("chat-error");
const history = [];

function turn(role, text) {
  const body = element("div", { class: "bubble" }, text);
  const li = element("li", { class: `turn ${role}` }, element("p", { class: "who" }, role === "user" ? "You" : "Assistant"), body);
  log.append(li);
  li.scrollIntoView({ block: "end" });
  return { li, body };
}

function sources(li, list, number) {
  if (!list.length) return;
  const id = `sources-${number}`;
  const button = element("button", { type: "button", class: "link sources-toggle", "aria-expanded": "false", "aria-controls": id },
    `Sources (${list.length})`);
  const items = element("ol", { class: "sources-list", id, hidden: "" });
  for (const s of list) {
    items.append(element("li", { class: "source", "data-conversation": s.conversation_id || "" },
      element("p", { class: "source-title" }, s.title || "Untitled conversation",
        element("span", { class: "muted" }, s.message_at ? ` · ${when(s.message_at)}` : "")),
      element("blockquote", {}, s.excerpt || "")));
  }
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    items.hidden = open;
  });
  li.append(button, items);
  button.scrollIntoView({ block: "nearest" });
}

async function ask(message) {
  errorLine.textContent = "";
  turn("user", message);
  const { li, body } = turn("assistant", "");
  body.classList.add("pending");
  body.textContent = "…";
  send.disabled = true;
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: root.dataset.model, stream: true,
        messages: [...history, { role: "user", content: message }] }) });
    if (!response.ok) { li.remove(); errorLine.textContent = await errorOf(response); return; }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = "", buffer = "", extension = null;
    body.textContent = "";
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const event of events) {
        const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data || data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        const piece = chunk.choices?.[0]?.delta?.content;
        if (piece) { text += piece; body.textContent = text; }
        if (chunk.soulprint) extension = chunk.soulprint;
      }
    }
    body.classList.remove("pending");
    history.push({ role: "user", content: message }, { role: "assistant", content: text });
    sources(li, extension?.sources || [], history.length);
  } catch (e) {
    li.remove();
    errorLine.textContent = "The connection dropped before the answer came. Try again.";
  } finally {
    send.disabled = false;
    box.focus();
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const message = box.value.trim();
  if (!message) return;
  box.value = "";
  ask(message);
});
box.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
});
