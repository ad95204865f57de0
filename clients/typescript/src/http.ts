import { AigateError, errorFromBody } from "./errors.js";

/**
 * Returns the bearer credential for the next request. Called before every request;
 * called again with `forceRefresh: true` once when aigate answers 401, so a provider can
 * fetch a fresh user token (from your app server, Firebase, Auth0, ...).
 */
export type TokenProvider = (context: { forceRefresh: boolean }) => string | Promise<string>;

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface TransportOptions {
  /** aigate's address, e.g. "https://ai.example.com". */
  baseUrl: string;
  getToken: TokenProvider;
  /** A fetch implementation (default: the global fetch). */
  fetch?: FetchLike;
  /** Retries of a 429 that carries Retry-After, and of a 503 (default 2). */
  maxRetries?: number;
  /** The longest wait the client accepts before a retry, in ms (default 30000). */
  maxRetryDelayMs?: number;
  /** Extra headers sent with every request (e.g. an app attestation token). */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export type Query = Record<string, string | number | boolean | undefined>;

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), if it has one. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** HTTP to aigate: the credential, the JSON body, errors as AigateError, 401 refresh and retries. */
export class Transport {
  readonly baseUrl: string;
  private readonly getToken: TokenProvider;
  private readonly fetchImpl: FetchLike;
  private readonly maxRetries: number;
  private readonly maxRetryDelayMs: number;
  private readonly headers: Record<string, string>;

  constructor(options: TransportOptions) {
    if (!options.baseUrl) throw new TypeError("baseUrl is required");
    if (typeof options.getToken !== "function") throw new TypeError("getToken must be a function");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.getToken = options.getToken;
    // called through a wrapper: a browser's fetch must not be called as a method of another object
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.maxRetries = options.maxRetries ?? 2;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
    this.headers = { ...(options.headers ?? {}) };
  }

  url(path: string, query?: Query): string {
    let url = this.baseUrl + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined) params.set(key, String(value));
      }
      const text = params.toString();
      if (text) url += "?" + text;
    }
    return url;
  }

  /** The successful response (any 2xx); every other outcome throws. */
  async request(method: string, path: string, body?: unknown, query?: Query,
                options: RequestOptions & { accept?: string } = {}): Promise<Response> {
    const url = this.url(path, query);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const token = await this.getToken({ forceRefresh: refreshed });
      const headers: Record<string, string> = {
        ...this.headers,
        Authorization: `Bearer ${token}`,
        Accept: options.accept ?? "application/json",
      };
      if (payload !== undefined) headers["Content-Type"] = "application/json";
      let response: Response;
      try {
        response = await this.fetchImpl(url, { method, headers, body: payload, signal: options.signal });
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        throw new AigateError("network_error", 0, `${method} ${path}: ${(err as Error)?.message ?? err}`);
      }
      if (response.ok) return response;

      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      const error = errorFromBody(response.status, await response.text(), retryAfter);
      if (response.status === 401 && !refreshed) {
        refreshed = true; // one more try with a refreshed credential
        attempt--;
        continue;
      }
      // 503: aigate could not serve the call now. 429 with Retry-After: a rate limit that
      // says when to come back (a used-up strategy limit sends none and is not retried).
      const retryable = response.status === 503 || (response.status === 429 && retryAfter !== undefined);
      if (!retryable || attempt >= this.maxRetries) throw error;
      const delayMs = retryAfter !== undefined ? retryAfter * 1000 : backoffMs(attempt);
      if (delayMs > this.maxRetryDelayMs) throw error;
      await sleep(delayMs, options.signal);
    }
  }

  async json<T>(method: string, path: string, body?: unknown, query?: Query, options?: RequestOptions): Promise<T> {
    const response = await this.request(method, path, body, query, options);
    return (await response.json()) as T;
  }

  async empty(method: string, path: string, body?: unknown, options?: RequestOptions): Promise<void> {
    const response = await this.request(method, path, body, undefined, options);
    await response.arrayBuffer(); // drain, so the connection can be reused
  }
}

/** 0.5 s, 1 s, 2 s, ... with up to 25% jitter. */
function backoffMs(attempt: number): number {
  const base = 500 * 2 ** attempt;
  return base + Math.random() * base * 0.25;
}
