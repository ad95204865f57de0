// The client against a real aigate (started here, with the provider simulator): every call,
// streams read to the end, cut by ai_chat_error and aborted, each error type, token refresh
// and retries.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AigateClient, AigateError } from "../dist/index.js";
import { AigateServer } from "../dist/server.js";
import { launchGateway } from "./gateway.mjs";

let gw;
let server;
let n = 0;

before(async () => {
  gw = await launchGateway();
  server = new AigateServer({ baseUrl: gw.url, serverKey: gw.serverKey });
});

after(async () => {
  await gw?.stop();
});

const HI = [{ role: "user", content: "hi" }];
const chatRequest = (extra = {}) => ({
  strategy: "free-normal", parameters: { example_string: "a pirate" }, messages: HI, ...extra,
});

/** A client for a new user whose token the app server mints (as an app would fetch it). */
async function newUser() {
  const userId = `ts-${process.pid}-${++n}`;
  const { token } = await server.mintToken(userId, 600);
  const client = new AigateClient({ baseUrl: gw.url, getToken: () => token });
  return { userId, client };
}

async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

async function rejectsWith(promise, errorType, status) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof AigateError, `expected an AigateError, got ${err}`);
    assert.equal(err.errorType, errorType, err.message);
    assert.equal(err.status, status);
    assert.ok(err.message.length > 0);
    return true;
  });
}

async function adminLogs(query) {
  const url = `${gw.url}/api/logs/search?${new URLSearchParams(query)}`;
  const resp = await fetch(url, { headers: { Authorization: `Bearer ${gw.adminKey}` } });
  assert.equal(resp.status, 200);
  return (await resp.json()).data.logs;
}

describe("chat", () => {
  test("chat, then continue it, read its history, list and delete it", async () => {
    const { client } = await newUser();
    const first = await client.chat(chatRequest());
    assert.match(first.reply.content, /Simulated/);
    assert.equal(first.chat_id.length, 18);
    assert.equal(first.asset[0].quantity, 49);
    assert.ok(first.tokens.total_tokens > 0);
    const second = await client.chat(chatRequest({ chat_id: first.chat_id }));
    assert.equal(second.chat_id, first.chat_id);
    assert.equal(second.current_count, 2);

    const history = await client.chatHistory({ chatId: first.chat_id, page: 1, pageSize: 1 });
    assert.equal(history.total_chat, 2);
    assert.equal(history.chat_histories.length, 1);
    assert.equal(history.chat_histories[0].messages.at(-1).role, "assistant");
    const chats = await client.chats({ page: 1, pageSize: 10 });
    assert.deepEqual(chats.chats.map((c) => c.chat_id), [first.chat_id]);
    assert.equal(chats.total, 1);

    await client.deleteChats([first.chat_id, "not-a-chat"]);
    await rejectsWith(client.chatHistory({ chatId: first.chat_id }), "item_not_found", 404);
    assert.equal((await client.chats()).total, 0);
  });

  test("a stream read to the end: pieces join to the reply; the last item has the totals", async () => {
    const { client } = await newUser();
    const items = await collect(client.chatStream(chatRequest({ messages: [{ role: "user", content: "a story" }] })));
    const last = items.at(-1);
    assert.ok(items.length >= 3);
    assert.equal(last.isFinish, true);
    assert.ok(items.slice(0, -1).every((i) => i.isFinish === false && i.chatId === last.chatId));
    assert.match(items.map((i) => i.content).join(""), /Simulated/);
    assert.ok(last.tokens.total_tokens > 0);
    assert.equal(last.asset[0].quantity, 49);
    assert.equal(last.currentCount, 1);
    assert.equal(last.currentTotalCount, 1);
    assert.equal(last.userSurplusCount, 99);
    assert.equal(items[0].tokens, undefined);
  });

  test("a stream cut by ai_chat_error throws an AigateError after the pieces before it", async () => {
    const { client } = await newUser();
    const seen = [];
    await rejectsWith((async () => {
      for await (const item of client.chatStream(chatRequest({
        messages: [{ role: "user", content: "[[sim error_after=2]] go" }],
      }))) seen.push(item);
    })(), "upstream_error", 502);
    assert.equal(seen.length, 2);
    assert.ok(seen.every((i) => !i.isFinish));
  });

  test("an aborted stream rejects with the abort and is billed as a client disconnect (499)", async () => {
    const { userId, client } = await newUser();
    const controller = new AbortController();
    const seen = [];
    const slow = "[[sim chunks=200 chunk_interval_ms=20]] a long story";
    await assert.rejects((async () => {
      for await (const item of client.chatStream(chatRequest({ messages: [{ role: "user", content: slow }] }),
        { signal: controller.signal })) {
        seen.push(item);
        if (seen.length === 3) controller.abort();
      }
    })(), { name: "AbortError" });
    assert.equal(seen.length, 3);
    let rows = [];
    for (let i = 0; i < 100 && rows.length === 0; i++) {
      rows = await adminLogs({ user: userId, code: "499" });
      if (rows.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(rows.length, 1, "the disconnect is in the usage log as code 499");
    assert.ok(rows[0].usage.output_tokens > 0, "what was generated is billed");
    assert.equal((await client.assets()).asset[0].quantity, 49);
  });

  test("breaking out of a stream closes it (billed as a disconnect too)", async () => {
    const { userId, client } = await newUser();
    const slow = "[[sim chunks=200 chunk_interval_ms=20]] another long story";
    for await (const item of client.chatStream(chatRequest({ messages: [{ role: "user", content: slow }] }))) {
      assert.equal(item.isFinish, false);
      break;
    }
    let rows = [];
    for (let i = 0; i < 100 && rows.length === 0; i++) {
      rows = await adminLogs({ user: userId, code: "499" });
      if (rows.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(rows.length, 1);
  });
});

describe("instruction, assets, AI requests", () => {
  test("instruction", async () => {
    const { client } = await newUser();
    const out = await client.instruction({ name: "test", parameters: { role: "doctor", question: "H1N1" } });
    assert.match(out.instruction.content, /Simulated/);
    assert.ok(out.usage.total_tokens > 0);
  });

  test("assets, and credits granted by the app server once per idempotency key", async () => {
    const { userId, client } = await newUser();
    assert.equal((await client.assets()).asset[0].quantity, 50);
    const grant = { asset: "ai_credit", quantity: 25, idempotency_key: `order-${userId}` };
    const first = await server.grantAssets(userId, grant);
    const again = await server.grantAssets(userId, grant);
    assert.equal(first.granted, true);
    assert.equal(again.granted, false);
    assert.equal((await client.assets()).asset[0].quantity, 75);
  });

  test("a sync AI request, an async one waited for, the history, reading one and deleting", async () => {
    const { client } = await newUser();
    const image = await client.aiRequest({ strategy: "dell-3", parameters: { prompt: "a red fox" } });
    assert.equal(image.status, "succeeded");
    assert.ok(Array.isArray(image.custom_response.image_urls));
    const video = await client.aiRequest({ strategy: "video", parameters: { prompt: "waves" } });
    assert.ok(["pending", "queueing"].includes(video.status));
    const done = await client.waitAiRequest(video.request_id, { intervalMs: 50, maxIntervalMs: 200, timeoutMs: 20000 });
    assert.equal(done.status, "succeeded");
    assert.ok(done.custom_response.video_url);
    assert.deepEqual(await client.getAiRequest(image.request_id), image);

    const history = await client.aiRequestHistory({ page: 1, pageSize: 10, status: ["succeeded"], fromAppserver: false });
    assert.deepEqual(history.data.map((r) => r.request_id).sort(), [image.request_id, video.request_id].sort());
    assert.equal(history.has_more, false);
    const one = await client.aiRequestHistory({ page: 1, pageSize: 1 });
    assert.equal(one.has_more, true);

    await client.deleteAiRequests([image.request_id]);
    await rejectsWith(client.getAiRequest(image.request_id), "item_not_found", 404);
  });

  test("waitAiRequest gives up after timeoutMs, and stops at once when aborted", async () => {
    const { client } = await newUser();
    const video = await client.aiRequest({ strategy: "video", parameters: { prompt: "[[sim job_duration_ms=5000]]" } });
    await rejectsWith(client.waitAiRequest(video.request_id, { intervalMs: 50, timeoutMs: 300 }), "timeout", 0);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await assert.rejects(client.waitAiRequest(video.request_id, { intervalMs: 50, signal: controller.signal }),
      { name: "AbortError" });
  });
});

describe("the app server entry point", () => {
  test("every call under /bp/server/user/{user_id}, marked as the app server's", async () => {
    const userId = `srv-${process.pid}`;
    const api = server.forUser(userId);
    const chat = await api.chat(chatRequest());
    assert.match(chat.reply.content, /Simulated/);
    const items = await collect(api.chatStream(chatRequest({ chat_id: chat.chat_id })));
    assert.equal(items.at(-1).chatId, chat.chat_id);
    assert.equal((await api.chatHistory({ chatId: chat.chat_id })).total_chat, 2);
    assert.equal((await api.chats()).total, 1);
    await api.deleteChats([chat.chat_id]);
    assert.match((await api.instruction({ name: "test", parameters: { role: "vet", question: "cats" } }))
      .instruction.content, /Simulated/);
    assert.equal((await api.assets()).asset[0].quantity, 48);
    const image = await api.aiRequest({ strategy: "dell-3", parameters: { prompt: "x" } });
    assert.deepEqual(await api.getAiRequest(image.request_id), image);
    // every call made (chat, stream, instruction, image) is a record of the app server's
    const mine = await api.aiRequestHistory({ page: 1, pageSize: 10, fromAppserver: true });
    assert.equal(mine.data.length, 4);
    assert.equal(mine.data[0].request_id, image.request_id);
    assert.equal((await api.aiRequestHistory({ page: 1, pageSize: 10, fromAppserver: false })).data.length, 0);
    await api.deleteAiRequests([image.request_id]);
    const left = await api.aiRequestHistory({ page: 1, pageSize: 10 });
    assert.ok(!left.data.some((r) => r.request_id === image.request_id));
    assert.equal(left.data.length, 3);
  });

  test("revoking a user's tokens signs the user out; a token minted later works", async () => {
    const before = (await server.mintToken("revoked-ts", 60)).token;
    const client = new AigateClient({ baseUrl: gw.url, getToken: () => before });
    assert.equal((await client.assets()).asset[0].name, "ai_credit");
    await new Promise((r) => setTimeout(r, 1100)); // tokens carry whole-second issue times
    const revoked = await server.revokeTokens("revoked-ts");
    assert.equal(revoked.user_id, "revoked-ts");
    await rejectsWith(client.assets(), "unauthorized", 401);
    await new Promise((r) => setTimeout(r, 1100));
    const after = (await server.mintToken("revoked-ts", 60)).token;
    assert.equal((await new AigateClient({ baseUrl: gw.url, getToken: () => after }).assets()).asset[0].name,
      "ai_credit");
  });

  test("a minted token works for the client; a wrong server key is unauthorized", async () => {
    const minted = await server.mintToken("minted-user", 60);
    assert.match(minted.expires_at, /Z$/);
    const client = new AigateClient({ baseUrl: gw.url, getToken: () => minted.token });
    assert.equal((await client.assets()).asset[0].name, "ai_credit");
    const wrong = new AigateServer({ baseUrl: gw.url, serverKey: "wrong-key-0123456789" });
    await rejectsWith(wrong.mintToken("x"), "unauthorized", 401);
    await rejectsWith(server.forUser("not a user id!").assets(), "invalid_parameter", 400);
  });
});

describe("errors", () => {
  test("each error type aigate can produce arrives as an AigateError with its status", async () => {
    const { client } = await newUser();
    await rejectsWith(client.chat({ strategy: "free-normal" }), "invalid_parameter", 400);
    await rejectsWith(client.chat(chatRequest({ strategy: "no-such-strategy" })), "item_not_found", 404);
    await rejectsWith(client.chat(chatRequest({ strategy: "off" })), "config_invalid", 400);
    await rejectsWith(client.chat(chatRequest({ strategy: "pricey" })), "insufficient_asset", 402);
    await client.chat(chatRequest({ strategy: "once" }));
    await rejectsWith(client.chat(chatRequest({ strategy: "once" })), "limit_exceeded", 429);
    await rejectsWith(client.chat(chatRequest({ strategy: "broken" })), "upstream_error", 502);
    await rejectsWith(client.chat(chatRequest({ strategy: "slow" })), "upstream_timeout", 504);
    await rejectsWith(client.chat(chatRequest({ parameters: { pad: "x".repeat(70_000) } })), "payload_too_large", 413);
    const anonymous = new AigateClient({ baseUrl: gw.url, getToken: () => "not-a-token" });
    await rejectsWith(anonymous.assets(), "unauthorized", 401);
    // errors before the first byte of a stream are ordinary errors too
    await rejectsWith(collect(client.chatStream(chatRequest({ strategy: "pricey" }))), "insufficient_asset", 402);
    await rejectsWith(collect(client.chatStream(chatRequest({ strategy: "slow" }))), "upstream_timeout", 504);
  });

  test("a network failure is an AigateError network_error with status 0", async () => {
    const client = new AigateClient({ baseUrl: "http://127.0.0.1:9", getToken: () => "t", maxRetries: 0 });
    await rejectsWith(client.assets(), "network_error", 0);
  });
});

describe("tokens and retries", () => {
  test("a 401 asks getToken for a refreshed token once, then succeeds", async () => {
    const calls = [];
    const client = new AigateClient({
      baseUrl: gw.url,
      getToken: async ({ forceRefresh }) => {
        calls.push(forceRefresh);
        return forceRefresh ? (await server.mintToken("ts-user", 60)).token : gw.expiredToken;
      },
    });
    const assets = await client.assets();
    assert.equal(assets.asset[0].name, "ai_credit");
    assert.deepEqual(calls, [false, true]);
    await client.assets(); // the provider is asked per request
    assert.deepEqual(calls, [false, true, false, true]);
  });

  test("a refreshed token that is refused too ends in unauthorized", async () => {
    const calls = [];
    const client = new AigateClient({
      baseUrl: gw.url,
      getToken: ({ forceRefresh }) => {
        calls.push(forceRefresh);
        return gw.expiredToken;
      },
    });
    await rejectsWith(client.chat(chatRequest()), "unauthorized", 401);
    assert.deepEqual(calls, [false, true]);
  });

  test("429 with Retry-After and 503 are retried after the wait they ask for", async () => {
    // aigate answers through a fetch that refuses the first two attempts, as a rate limit and an outage would
    const attempts = [];
    const refusals = [
      new Response('{"error":{"error_type":"limit_exceeded","message":"rate limit"}}',
        { status: 429, headers: { "Retry-After": "1", "Content-Type": "application/json" } }),
      new Response('{"error":{"error_type":"service_unavailable","message":"database down"}}',
        { status: 503, headers: { "Retry-After": "0", "Content-Type": "application/json" } }),
    ];
    const { token } = await server.mintToken("ts-retry", 60);
    const client = new AigateClient({
      baseUrl: gw.url,
      getToken: () => token,
      fetch: (url, init) => {
        attempts.push(Date.now());
        return refusals.length ? Promise.resolve(refusals.shift()) : fetch(url, init);
      },
    });
    const assets = await client.assets();
    assert.equal(assets.asset[0].name, "ai_credit");
    assert.equal(attempts.length, 3);
    assert.ok(attempts[1] - attempts[0] >= 950, `waited ${attempts[1] - attempts[0]} ms for Retry-After: 1`);
  });

  test("a 429 without Retry-After (a used-up limit) is not retried; retries stop at maxRetries", async () => {
    let count = 0;
    const refuse = (status, headers = {}) => () => {
      count++;
      return Promise.resolve(new Response(`{"error":{"error_type":"x","message":"no"}}`, { status, headers }));
    };
    const noHeader = new AigateClient({ baseUrl: gw.url, getToken: () => "t", fetch: refuse(429) });
    await rejectsWith(noHeader.assets(), "x", 429);
    assert.equal(count, 1);
    count = 0;
    const outage = new AigateClient({ baseUrl: gw.url, getToken: () => "t", maxRetries: 2,
      fetch: refuse(503, { "Retry-After": "0" }) });
    await rejectsWith(outage.assets(), "x", 503);
    assert.equal(count, 3);
    count = 0;
    const tooLong = new AigateClient({ baseUrl: gw.url, getToken: () => "t", maxRetryDelayMs: 1000,
      fetch: refuse(503, { "Retry-After": "120" }) });
    await assert.rejects(tooLong.assets(), (err) => err.retryAfter === 120);
    assert.equal(count, 1);
  });
});
