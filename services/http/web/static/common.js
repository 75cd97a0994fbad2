// What every page's script shares: calls to the API with the session cookie.
// The cookie counts for the API only with the X-Soulprint-Web header (or, where no
// header can be sent, the session's CSRF token from the page's meta tag).

export const CSRF = document.querySelector('meta[name="soulprint-csrf"]')?.content ?? "";

export function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("X-Soulprint-Web", "1");
  return fetch(path, { ...options, headers, credentials: "same-origin" });
}

// The one line an API error says ({"error": {"message"}}), or the status when there is none.
export async function errorOf(response) {
  try {
    const body = await response.json();
    if (body?.error?.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `The server answered ${response.status} ${response.statusText}`.trim();
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

export function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);  // strings become text nodes: never markup
  return node;
}
