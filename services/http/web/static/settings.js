// The settings page: show and copy the API token; delete the person (DELETE /v1/people/{id})
// after the confirmation box is ticked, then show the receipt.
import { api, errorOf, element } from "./common.js";

const root = document.getElementById("settings");
const token = document.getElementById("api-token");
const show = document.getElementById("show-token");
const copyStatus = document.getElementById("copy-status");

show.addEventListener("click", () => {
  const hidden = token.type === "password";
  token.type = hidden ? "text" : "password";
  show.textContent = hidden ? "Hide" : "Show";
  show.setAttribute("aria-pressed", String(hidden));
});

document.getElementById("copy-token").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(token.value);
    copyStatus.textContent = "Copied.";
  } catch (_) {
    token.type = "text";
    token.select();
    copyStatus.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
});

document.getElementById("delete-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const errorLine = document.getElementById("delete-error");
  errorLine.textContent = "";
  if (!document.getElementById("confirm-delete").checked) {
    errorLine.textContent = "Tick the box first to confirm.";
    document.getElementById("confirm-delete").focus();
    return;
  }
  const button = document.getElementById("delete");
  button.disabled = true;
  const response = await api(`/v1/people/${encodeURIComponent(root.dataset.user)}`, { method: "DELETE" }).catch(() => null);
  if (!response || !response.ok) {
    button.disabled = false;
    errorLine.textContent = response ? await errorOf(response) : "The connection dropped. Try again.";
    return;
  }
  const receipt = await response.json();
  const rows = document.getElementById("receipt-rows");
  let total = 0;
  for (const [table, count] of Object.entries(receipt.tables || {})) {
    total += Number(count) || 0;
    rows.append(element("tr", {}, element("td", {}, table), element("td", {}, String(count))));
  }
  document.getElementById("receipt-summary").textContent =
    `Everything about ${receipt.user_id} was deleted${receipt.erased_at ? ` at ${new Date(receipt.erased_at).toLocaleString()}` : ""}: ` +
    `${total.toLocaleString()} rows and ${receipt.files ?? 0} stored files.`;
  document.getElementById("delete-form").hidden = true;
  const box = document.getElementById("receipt");
  box.hidden = false;
  box.focus();
});
