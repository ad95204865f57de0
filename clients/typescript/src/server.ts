/**
 * aigate-client/server: the app server's calls, authenticated with the app server key.
 * Node.js only: the server key must never reach a browser or an app binary.
 */
import { AppApi } from "./api.js";
import { type FetchLike, type RequestOptions, Transport } from "./http.js";
import type { GrantRequest, GrantResponse, TokenResponse, TokensRevoked } from "./types.js";

export interface AigateServerOptions {
  baseUrl: string;
  /** The app server key (`apps[].server_keys[].key`). */
  serverKey: string;
  fetch?: FetchLike;
  maxRetries?: number;
  maxRetryDelayMs?: number;
  headers?: Record<string, string>;
}

export class AigateServer {
  private readonly http: Transport;

  constructor(options: AigateServerOptions) {
    if (typeof (globalThis as { document?: unknown }).document !== "undefined") {
      throw new Error("aigate-client/server holds the app server key: use it on your server, never in a browser");
    }
    if (!options.serverKey) throw new TypeError("serverKey is required");
    const key = options.serverKey;
    this.http = new Transport({ ...options, getToken: () => key });
  }

  /** Every App API call, made by the app server for `userId`. */
  forUser(userId: string): AppApi {
    return new AppApi(this.http, userRoot(userId));
  }

  /** POST /bp/server/user/{user_id}/token: a user token for your app's client. */
  mintToken(userId: string, ttlSeconds = 3600, options?: RequestOptions): Promise<TokenResponse> {
    return this.http.json("POST", `${userRoot(userId)}/token`, { ttl_seconds: ttlSeconds }, undefined, options);
  }

  /** POST /bp/server/user/{user_id}/tokens/revoke: every token of the user issued until now is refused. */
  revokeTokens(userId: string, options?: RequestOptions): Promise<TokensRevoked> {
    return this.http.json("POST", `${userRoot(userId)}/tokens/revoke`, undefined, undefined, options);
  }

  /** POST .../ai/assets/grant: adds purchased credits; the same idempotency key twice grants once. */
  grantAssets(userId: string, grant: GrantRequest, options?: RequestOptions): Promise<GrantResponse> {
    return this.http.json("POST", `${userRoot(userId)}/ai/assets/grant`, grant, undefined, options);
  }
}

function userRoot(userId: string): string {
  return `/bp/server/user/${encodeURIComponent(userId)}`;
}

export { AppApi } from "./api.js";
export { AigateError } from "./errors.js";
export type * from "./types.js";
