// The SSE parser against the WHATWG event stream rules, fed in every possible chunking.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SSEParser, readEvents } from "../dist/index.js";

function parseAll(text, chunkSize) {
  const parser = new SSEParser();
  const events = [];
  for (let i = 0; i < text.length; i += chunkSize) events.push(...parser.push(text.slice(i, i + chunkSize)));
  parser.end();
  return events;
}

function parseEverySplit(text) {
  const whole = parseAll(text, text.length || 1);
  for (let size = 1; size <= Math.min(text.length, 8); size++) {
    assert.deepEqual(parseAll(text, size), whole, `chunks of ${size}`);
  }
  return whole;
}

test("LF, CRLF and CR end lines alike, also when CR and LF arrive apart", () => {
  for (const eol of ["\n", "\r\n", "\r"]) {
    const text = `event: ai_chat_msg${eol}data: {"a":1}${eol}${eol}data: two${eol}${eol}`;
    assert.deepEqual(parseEverySplit(text), [
      { event: "ai_chat_msg", data: '{"a":1}', id: "" },
      { event: "message", data: "two", id: "" },
    ], JSON.stringify(eol));
  }
  // a CR at the end of one chunk and its LF at the start of the next make one line end
  const parser = new SSEParser();
  assert.deepEqual(parser.push("data: x\r"), []);
  assert.deepEqual(parser.push("\n\r\n"), [{ event: "message", data: "x", id: "" }]);
});

test("multi-line data is joined with LF; comments and unknown fields are ignored", () => {
  const text = ": a comment\ndata: first\n: between\ndata:second\ndata\nfoo: bar\n\n";
  assert.deepEqual(parseEverySplit(text), [{ event: "message", data: "first\nsecond\n", id: "" }]);
});

test("only one space after the colon is dropped; a field without a colon has an empty value", () => {
  assert.deepEqual(parseEverySplit("data:  two spaces\n\ndata\n\n"), [
    { event: "message", data: " two spaces", id: "" },
    { event: "message", data: "", id: "" },
  ]);
});

test("no data, no event; the event name does not leak into the next event", () => {
  assert.deepEqual(parseEverySplit("event: lonely\n\ndata: x\n\n"), [{ event: "message", data: "x", id: "" }]);
});

test("id persists, retry is read, a BOM is skipped, an unfinished event is dropped", () => {
  const text = "\uFEFFid: 7\nretry: 1500\ndata: a\n\ndata: b\n\ndata: never dispatched";
  assert.deepEqual(parseEverySplit(text), [
    { event: "message", data: "a", id: "7", retry: 1500 },
    { event: "message", data: "b", id: "7", retry: 1500 },
  ]);
});

test("readEvents decodes UTF-8 split across chunks", async () => {
  const bytes = new TextEncoder().encode('event: ai_chat_msg\ndata: {"content":"流媒体"}\n\n');
  const stream = new ReadableStream({
    start(controller) {
      for (const b of bytes) controller.enqueue(new Uint8Array([b]));
      controller.close();
    },
  });
  const events = [];
  for await (const e of readEvents(stream)) events.push(e);
  assert.deepEqual(events, [{ event: "ai_chat_msg", data: '{"content":"流媒体"}', id: "" }]);
});
