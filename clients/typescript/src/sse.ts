/**
 * A server-sent events parser following the WHATWG HTML "event stream interpretation":
 * lines end with CRLF, LF or CR (also when a CR and its LF arrive in different chunks);
 * `data` lines accumulate, joined by "\n"; lines starting with ":" are comments; a field
 * without a colon has an empty value; one space after the colon is dropped; a blank line
 * dispatches the event (nothing is dispatched when no data was given); an event without
 * an `event` field is a "message"; a leading byte order mark is ignored.
 */
export interface ServerSentEvent {
  event: string;
  data: string;
  id: string;
  retry?: number;
}

export class SSEParser {
  private buffer = "";
  private pendingCR = false;
  private started = false;
  private data: string[] = [];
  private eventType = "";
  private lastEventId = "";
  private retry: number | undefined;

  /** Feed decoded text; returns the events completed by it. */
  push(text: string): ServerSentEvent[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const events: ServerSentEvent[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch === 0x0a && this.pendingCR) {
        // the LF of a CRLF whose CR ended the previous line
        this.pendingCR = false;
        start = i + 1;
        continue;
      }
      this.pendingCR = false;
      if (ch === 0x0d || ch === 0x0a) {
        this.line(this.buffer + text.slice(start, i), events);
        this.buffer = "";
        this.pendingCR = ch === 0x0d;
        start = i + 1;
      }
    }
    this.buffer += text.slice(start);
    return events;
  }

  /** The stream ended: an incomplete event (no blank line after it) is discarded, per the spec. */
  end(): void {
    this.buffer = "";
    this.data = [];
    this.eventType = "";
  }

  private line(line: string, out: ServerSentEvent[]): void {
    if (line === "") {
      this.dispatch(out);
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\u0000")) this.lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  private dispatch(out: ServerSentEvent[]): void {
    if (this.data.length === 0) {
      this.eventType = "";
      return;
    }
    const event: ServerSentEvent = {
      event: this.eventType || "message",
      data: this.data.join("\n"),
      id: this.lastEventId,
    };
    if (this.retry !== undefined) event.retry = this.retry;
    out.push(event);
    this.data = [];
    this.eventType = "";
  }
}

/** The events of a response body, as they arrive. Breaking out of the loop cancels the body. */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SSEParser();
  let done = false;
  try {
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) {
        done = true;
        yield* parser.push(decoder.decode());
        parser.end();
        return;
      }
      yield* parser.push(decoder.decode(chunk.value, { stream: true }));
    }
  } finally {
    if (!done) {
      // the consumer stopped early (or the read failed): close the connection
      await reader.cancel().catch(() => undefined);
    }
    reader.releaseLock();
  }
}
