// aigate console: writes go to the Admin API as JSON with the session's CSRF token;
// errors ("field: message; ...") are shown beside the field they name. No inline
// script and no eval anywhere (the page's Content-Security-Policy forbids both).
"use strict";

const csrfToken = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

async function callApi(url, method, body) {
  const res = await fetch(url, {
    method,
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()},
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let doc = null;
  try { doc = await res.json(); } catch (e) { doc = {success: false, message: `HTTP ${res.status}`}; }
  if (!res.ok && doc.success !== false) doc = {success: false, message: doc.message || `HTTP ${res.status}`};
  return doc;
}

function setPath(obj, path, value) {
  const parts = path.split(".");
  let cur = obj;
  for (const p of parts.slice(0, -1)) cur = cur[p] = cur[p] || {};
  cur[parts[parts.length - 1]] = value;
}

function clearErrors(form) {
  form.querySelectorAll(".field-error.js").forEach((el) => el.remove());
  form.querySelectorAll(".form-error").forEach((el) => { el.textContent = ""; });
}

// "user_tokens.2.secret" (request validation) and "user_tokens[2].secret" (the file's
// checks) name the same field; a form editing one list item drops the item's prefix.
function fieldOf(path, form) {
  let field = path.replace(/\.(\d+)(?=\.|$)/g, "[$1]");
  const prefix = form.dataset.errorPrefix;
  if (prefix && field.startsWith(prefix)) field = field.slice(prefix.length).replace(/^\./, "");
  return field;
}

function showErrors(form, message) {
  const general = [];
  for (const part of String(message || "Request failed").split("; ")) {
    const idx = part.indexOf(": ");
    let field = idx > 0 ? fieldOf(part.slice(0, idx), form) : "";
    let input = null;
    while (field && !input) {  // "params.temperature" -> that input, else "params"
      input = form.querySelector(`[name="${CSS.escape(field)}"]`);
      const parent = field.replace(/(\.[^.[\]]*|\[\d+\])$/, "");
      field = parent === field ? "" : parent;
    }
    if (input) {
      const span = document.createElement("span");
      span.className = "field-error js";
      span.setAttribute("role", "alert");
      span.textContent = part;
      input.insertAdjacentElement("afterend", span);
      input.setAttribute("aria-invalid", "true");
    } else {
      general.push(part);
    }
  }
  const box = form.querySelector(".form-error");
  if (general.length && box) box.textContent = general.join("; ");
  else if (general.length) alert(general.join("; "));
}

function readValue(el, form) {
  const type = el.dataset.type || "";
  if (type === "bool") return el.checked;
  if (type === "switch") {  // a choice of form: null, or the fields its option sets
    if (el.value === el.dataset.nullWhen) return null;
    const set = el.selectedOptions[0] && el.selectedOptions[0].dataset.set;
    return set ? JSON.parse(set) : undefined;
  }
  const raw = el.value.trim();
  if (raw === "" && el.hasAttribute("data-optional")) return undefined;
  if (raw === "" && el.dataset.empty === "null") return null;
  // not a number: sent as typed, so the Admin API's message names the field
  if (type === "int") return raw === "" ? null : (/^-?\d+$/.test(raw) ? Number.parseInt(raw, 10) : raw);
  if (type === "float") return raw === "" ? null : (Number.isFinite(Number(raw)) ? Number(raw) : raw);
  if (type === "list") return raw ? raw.split(",").map((s) => s.trim()).filter(Boolean) : [];
  if (type === "json") {
    try { return raw ? JSON.parse(raw) : {}; } catch (e) { throw {field: el.name, message: `${el.name}: not valid JSON (${e.message})`}; }
  }
  return el.value;
}

function formBody(form) {
  const body = {};
  for (const el of form.querySelectorAll("[name]")) {
    if (el.name === "csrf_token" || el.hasAttribute("data-path-only")) continue;
    if (el.closest("[hidden]")) continue;  // a section of a form not chosen
    const value = readValue(el, form);
    if (value !== undefined) setPath(body, el.name, value);
  }
  return body;
}

function randomSecret() {
  const bytes = new Uint8Array(36);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

function showSecret(value) {
  const box = document.getElementById("secret-once");
  if (!box || !value) return;
  document.getElementById("secret-value").textContent = value;
  box.hidden = false;
  box.scrollIntoView({block: "center"});
}

function after(el, doc) {
  const then = el.dataset.then || "";
  if (then === "reload") location.reload();
  else if (then.startsWith("redirect:")) location.assign(then.slice(9));
}

async function submitForm(form) {
  clearErrors(form);
  if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
  let body;
  try { body = formBody(form); } catch (err) { showErrors(form, err.message); return; }
  let url = form.dataset.api;
  for (const el of form.querySelectorAll("[data-path-only]")) url = url.replace(`{${el.name}}`, encodeURIComponent(el.value));
  if (form.dataset.list !== undefined) {  // one item of a list setting: the list is sent whole
    const list = JSON.parse(form.dataset.list || "[]");
    const index = Number.parseInt(form.dataset.listIndex, 10);
    list[Number.isNaN(index) ? list.length : index] = body;
    body = form.dataset.listField ? {[form.dataset.listField]: list} : list;
  }
  if (form.hasAttribute("data-idempotent")) body.idempotency_key = form.dataset.key || (form.dataset.key = randomSecret());
  const doc = await callApi(url, form.dataset.method || "POST", body);
  if (!doc.success) { showErrors(form, doc.message); return; }
  if (form.dataset.showSecret) showSecret((doc.data || {})[form.dataset.showSecret]);
  after(form, doc);
}

async function clickAction(btn) {
  if (btn.dataset.confirm && !confirm(btn.dataset.confirm)) return;
  let body = btn.dataset.body ? JSON.parse(btn.dataset.body) : undefined;
  let secret = "";
  if (btn.hasAttribute("data-rotate-secret")) body = {user_token_secret: (secret = randomSecret())};
  btn.disabled = true;
  const doc = await callApi(btn.dataset.api, btn.dataset.method || "POST", body);
  btn.disabled = false;
  const out = btn.dataset.result ? document.querySelector(btn.dataset.result) : null;
  if (!doc.success) {
    if (out) out.textContent = doc.message; else alert(doc.message);
    return;
  }
  if (out) {
    const d = doc.data || {};
    out.textContent = d.ok === undefined ? "done" :
      `${d.ok ? "OK" : "Failed"} · status ${d.status ?? "none"} · ${d.latency_ms} ms${d.error ? " · " + d.error : ""}`;
    out.className = "test-result " + (d.ok === false ? "bad" : "ok");
  }
  if (secret) showSecret(secret);
  after(btn, doc);
}

// Live preview of a prompt template, rendered by the server against sample parameters.
function setupPreview() {
  const section = document.querySelector("[data-preview-app]");
  const source = document.querySelector("[data-preview-source]");
  if (!section || !source) return;
  const params = document.getElementById("preview-params");
  const output = document.getElementById("preview-output");
  const error = document.getElementById("preview-error");
  let timer = null;
  const run = async () => {
    error.textContent = "";
    let parameters, template;
    try { parameters = params.value.trim() ? JSON.parse(params.value) : {}; }
    catch (e) { error.textContent = `parameters: not valid JSON (${e.message})`; return; }
    try { template = source.hasAttribute("data-preview-json") ? JSON.parse(source.value) : source.value; }
    catch (e) { error.textContent = `template: not valid JSON (${e.message})`; return; }
    const doc = await callApi(`/api/apps/${encodeURIComponent(section.dataset.previewApp)}/preview`, "POST", {template, parameters});
    if (doc.success) {
      const r = doc.data.rendered;
      output.textContent = typeof r === "string" ? r : JSON.stringify(r, null, 2);
    } else {
      output.textContent = "";
      error.textContent = doc.message;
    }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(run, 250); };
  source.addEventListener("input", schedule);
  params.addEventListener("input", schedule);
  run();
}

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.matches("form[data-api]")) { ev.preventDefault(); submitForm(form); }
});
document.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button[data-api]");
  if (btn) { ev.preventDefault(); clickAction(btn); return; }
  if (ev.target.closest("button[data-reload]")) { location.reload(); return; }
  const copy = ev.target.closest("button[data-copy]");
  if (copy) {
    const text = document.querySelector(copy.dataset.copy).textContent;
    navigator.clipboard.writeText(text).then(() => { copy.textContent = "Copied"; }, () => { copy.textContent = "Select and copy"; });
  }
});
// Sections shown only for some choices of a select: data-show-when="#select-id=a,b".
function updateSections() {
  document.querySelectorAll("[data-show-when]").forEach((section) => {
    const [selector, values] = section.dataset.showWhen.split("=");
    const select = document.querySelector(selector);
    if (select) section.hidden = !values.split(",").includes(select.value);
  });
}

document.addEventListener("change", (ev) => {
  if (ev.target.matches("select[data-autosubmit]")) ev.target.form.submit();
  if (ev.target.matches("select[data-switch]")) updateSections();
});
document.addEventListener("DOMContentLoaded", () => {
  setupPreview();
  updateSections();
  document.querySelectorAll("form[data-readonly] input, form[data-readonly] textarea, form[data-readonly] select")
    .forEach((el) => { el.disabled = true; });
});
