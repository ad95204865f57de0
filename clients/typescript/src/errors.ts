/** The App API's error types and their HTTP statuses (aigate's `aigate/errors.py` STATUS). */
export const ERROR_STATUS: Readonly<Record<string, number>> = Object.freeze({
  invalid_parameter: 400,
  config_invalid: 400,
  unauthorized: 401,
  insufficient_asset: 402,
  item_not_found: 404,
  payload_too_large: 413,
  limit_exceeded: 429,
  internal_error: 500,
  upstream_error: 502,
  service_unavailable: 503,
  upstream_timeout: 504,
});

/**
 * Every failure the client reports, whether aigate answered with an error
 * (`{"error": {"error_type", "message"}}`), a stream ended with `ai_chat_error`, or the
 * network failed (`errorType` "network_error", `status` 0). An aborted call rejects
 * with the signal's reason (an `AbortError`), not with this class.
 */
export class AigateError extends Error {
  override readonly name = "AigateError";
  readonly errorType: string;
  /** The HTTP status; for an `ai_chat_error` event, the status of its error type. */
  readonly status: number;
  /** Seconds the server asked to wait (`Retry-After`), when it said. */
  readonly retryAfter?: number;

  constructor(errorType: string, status: number, message: string, retryAfter?: number) {
    super(message);
    this.errorType = errorType;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** An error body as aigate sends it, or a generic error when the body is not one. */
export function errorFromBody(status: number, body: string, retryAfter?: number): AigateError {
  try {
    const parsed = JSON.parse(body) as { error?: { error_type?: unknown; message?: unknown } };
    const err = parsed?.error;
    if (err && typeof err.error_type === "string") {
      return new AigateError(err.error_type, status, String(err.message ?? ""), retryAfter);
    }
  } catch {
    // not JSON: fall through
  }
  return new AigateError("http_error", status, body.slice(0, 500) || `HTTP ${status}`, retryAfter);
}
