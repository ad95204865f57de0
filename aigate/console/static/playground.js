// The playground: streams a chat through /api/playground/chat (server-sent events over
// fetch), appending text with textContent only (replies are untrusted).
"use strict";

function setupPlayground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const choices = JSON.parse(form.dataset.choices);
  const app = document.getElementById("pg-app"), strategy = document.getElementById("pg-strategy");
  const fill = () => {
    strategy.replaceChildren(...(choices[app.value] || []).map((n) => { const o = document.createElement("option"); o.textContent = n; return o; }));
  };
  app.addEventListener("change", () => { fill(); form.dataset.chatId = ""; });
  fill();
  const chat = document.getElementById("pg-chat");
  const bubble = (role, text) => {
    const div = document.createElement("div");
    div.className = `msg ${role}`;
    const b = document.createElement("b"); b.textContent = role;
    const span = document.createElement("span"); span.className = "pre"; span.textContent = text;
    div.append(b, " ", span);
    chat.appendChild(div);
    return span;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    let parameters;
    try { parameters = JSON.parse(document.getElementById("pg-params").value || "{}"); }
    catch (e) { showErrors(form, `parameters: not valid JSON (${e.message})`); return; }
    const message = document.getElementById("pg-message").value;
    const body = {app_id: app.value, strategy: strategy.value, user: document.getElementById("pg-user").value,
                  parameters, messages: [{role: "user", content: message}]};
    if (form.dataset.chatId) body.chat_id = form.dataset.chatId;
    bubble("user", message);
    const started = performance.now();
    const res = await fetch("/api/playground/chat", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()}, body: JSON.stringify(body)});
    if (!res.ok || !(res.headers.get("content-type") || "").startsWith("text/event-stream")) {
      let msg = `HTTP ${res.status}`;
      try { msg = (await res.json()).message || msg; } catch (e) { /* not JSON */ }
      showErrors(form, msg);
      return;
    }
    const reply = bubble("assistant", "");
    let firstByte = null, buffer = "", userId = "";
    const reader = res.body.getReader(), decoder = new TextDecoder();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const event = (frame.match(/^event: (.*)$/m) || [])[1];
        const dataLine = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!dataLine) continue;
        const data = JSON.parse(dataLine);
        if (event === "playground") {
          document.getElementById("pg-system").textContent = data.system_prompt || "(no system prompt)";
          userId = data.user_id;
        } else if (data.error) {
          reply.textContent += ` [error: ${data.error.message || JSON.stringify(data.error)}]`;
        } else {
          if (firstByte === null && data.content) firstByte = performance.now() - started;
          reply.textContent += data.content || "";
          if (data.chat_id) form.dataset.chatId = data.chat_id;
          if (data.is_finish && data.tokens) {
            document.getElementById("pg-tokens").textContent =
              `${data.tokens.prompt_tokens} in · ${data.tokens.completion_tokens} out · ${data.tokens.total_tokens} total`;
          }
        }
      }
    }
    const total = performance.now() - started;
    document.getElementById("pg-latency").textContent =
      `${Math.round(firstByte ?? total)} ms to first token · ${Math.round(total)} ms total`;
    document.getElementById("pg-message").value = "";
    await showLogRow(userId);
  });
}

async function showLogRow(userId) {
  // the usage log row is written by the batched writer: look for it for a few seconds
  for (let i = 0; i < 20 && userId; i++) {
    const res = await fetch(`/api/logs/search?per_page=1&user=${encodeURIComponent(userId)}`, {credentials: "same-origin"});
    const doc = await res.json();
    const row = doc.success && doc.data.logs[0];
    if (row && Date.now() - Date.parse(row.created_at) < 60000) {
      document.getElementById("pg-cost").textContent = `${row.used_amount} (price of ${row.model})`;
      const a = document.createElement("a");
      a.href = `/console/logs/${row.id}`; a.textContent = `log ${row.id}`;
      document.getElementById("pg-log").replaceChildren(a);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

document.addEventListener("DOMContentLoaded", setupPlayground);
