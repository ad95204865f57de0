/**
 * aigate-client: the App API for an app's clients (browsers, Node.js 20+), acting for one
 * end user with a user token. The app server's calls (server key) are in
 * `aigate-client/server`, which is never part of a browser bundle.
 */
import { AppApi } from "./api.js";
import { type FetchLike, type TokenProvider, Transport } from "./http.js";

export interface AigateClientOptions {
  /** aigate's address, e.g. "https://ai.example.com". */
  baseUrl: string;
  /** Returns the user token; called per request, and with `forceRefresh: true` after a 401. */
  getToken: TokenProvider;
  fetch?: FetchLike;
  /** Retries of 503 and of 429 with Retry-After (default 2). */
  maxRetries?: number;
  /** The longest Retry-After the client waits for, ms (default 30000). */
  maxRetryDelayMs?: number;
  /** Extra headers for every request (e.g. an app attestation token). */
  headers?: Record<string, string>;
}

export class AigateClient extends AppApi {
  constructor(options: AigateClientOptions) {
    super(new Transport(options), "/bp");
  }
}

export { AppApi, type WaitOptions } from "./api.js";
export { AigateError, ERROR_STATUS } from "./errors.js";
export { type FetchLike, type RequestOptions, type TokenProvider, parseRetryAfter } from "./http.js";
export { type ServerSentEvent, SSEParser, readEvents } from "./sse.js";
export type * from "./types.js";
