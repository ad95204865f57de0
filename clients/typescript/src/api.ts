import { AigateError, ERROR_STATUS } from "./errors.js";
import { type RequestOptions, Transport, sleep } from "./http.js";
import { readEvents } from "./sse.js";
import type {
  AiRequestHistory, AiRequestHistoryQuery, AiRequestRecord, AiRequestSubmit, AssetsResponse, ChatHistoryResponse,
  ChatRequest, ChatResponse, ChatStreamItem, ChatsResponse, InstructionRequest, InstructionResponse,
} from "./types.js";

export interface WaitOptions extends RequestOptions {
  /** First wait between reads, ms (default 500); it grows by `factor` (1.5) up to `maxIntervalMs` (5000). */
  intervalMs?: number;
  maxIntervalMs?: number;
  factor?: number;
  /** Give up (AigateError "timeout") after this long, ms (default: never). */
  timeoutMs?: number;
}

const FINISHED = new Set(["succeeded", "failed"]);

/**
 * Every App API call for one end user. `root` is "/bp" (a user token) or
 * "/bp/server/user/{user_id}" (the app server key, see `aigate-client/server`).
 */
export class AppApi {
  protected readonly http: Transport;
  private readonly root: string;

  constructor(http: Transport, root: string) {
    this.http = http;
    this.root = root;
  }

  private path(rel: string): string {
    return `${this.root}/ai${rel}`;
  }

  /** POST /ai/chat: one reply, with the user's assets and counts after the call. */
  chat(request: ChatRequest, options?: RequestOptions): Promise<ChatResponse> {
    return this.http.json("POST", this.path("/chat"), request, undefined, options);
  }

  /**
   * POST /ai/chat/stream as an async iterator of `{chatId, content, isFinish}`; the last
   * item (`isFinish: true`) also has `tokens`, `asset` and the counts. An `ai_chat_error`
   * event is thrown as an AigateError; so is a stream that ends without its last item.
   * Breaking out of the loop, or aborting `signal`, closes the connection (aigate then
   * stops the upstream call and bills what was generated).
   */
  async *chatStream(request: ChatRequest, options: RequestOptions = {}): AsyncGenerator<ChatStreamItem, void> {
    const response = await this.http.request("POST", this.path("/chat/stream"), request, undefined,
      { ...options, accept: "text/event-stream" });
    if (!response.body) throw new AigateError("network_error", 0, "the stream has no body");
    for await (const event of readEvents(response.body)) {
      // events already received are not handed out after an abort
      if (options.signal?.aborted) throw options.signal.reason;
      if (event.event === "ai_chat_error") {
        const { error } = JSON.parse(event.data) as { error: { error_type: string; message: string } };
        throw new AigateError(error.error_type, ERROR_STATUS[error.error_type] ?? 500, error.message);
      }
      if (event.event !== "ai_chat_msg" && event.event !== "message") continue;
      const data = JSON.parse(event.data) as Record<string, unknown>;
      const item: ChatStreamItem = {
        chatId: String(data.chat_id ?? ""),
        content: String(data.content ?? ""),
        isFinish: data.is_finish === true,
      };
      if (item.isFinish) {
        if (data.tokens !== undefined) item.tokens = data.tokens as ChatStreamItem["tokens"];
        if (data.asset !== undefined) item.asset = data.asset as ChatStreamItem["asset"];
        if (data.current_count !== undefined) item.currentCount = data.current_count as number;
        if (data.current_total_count !== undefined) item.currentTotalCount = data.current_total_count as number;
        if (data.user_surplus_count !== undefined) item.userSurplusCount = data.user_surplus_count as number;
        yield item;
        return;
      }
      yield item;
    }
    if (options.signal?.aborted) throw options.signal.reason;
    throw new AigateError("network_error", 0, "the stream ended before its final event");
  }

  /** GET /ai/chat/history: a saved chat's exchanges, newest first. */
  chatHistory(query: { chatId: string; page?: number; pageSize?: number }, options?: RequestOptions):
    Promise<ChatHistoryResponse> {
    return this.http.json("GET", this.path("/chat/history"), undefined,
      { chat_id: query.chatId, page: query.page, page_size: query.pageSize }, options);
  }

  /** GET /ai/chats: the user's chats, newest first. */
  chats(query: { page?: number; pageSize?: number } = {}, options?: RequestOptions): Promise<ChatsResponse> {
    return this.http.json("GET", this.path("/chats"), undefined,
      { page: query.page, page_size: query.pageSize }, options);
  }

  /** POST /ai/chat/delete (idempotent). */
  deleteChats(chatIds: string[], options?: RequestOptions): Promise<void> {
    return this.http.empty("POST", this.path("/chat/delete"), { chat_ids: chatIds }, options);
  }

  /** POST /ai/chat/instruction: a named single-shot prompt template. */
  instruction(request: InstructionRequest, options?: RequestOptions): Promise<InstructionResponse> {
    return this.http.json("POST", this.path("/chat/instruction"), request, undefined, options);
  }

  /** GET /ai/assets: the user's balances. */
  assets(options?: RequestOptions): Promise<AssetsResponse> {
    return this.http.json("GET", this.path("/assets"), undefined, undefined, options);
  }

  /** POST /ai/ai_request: runs a strategy of any module; async modules answer `pending`/`queueing`. */
  aiRequest(request: AiRequestSubmit, options?: RequestOptions): Promise<AiRequestRecord> {
    return this.http.json("POST", this.path("/ai_request"), request, undefined, options);
  }

  /** GET /ai/ai_request/{request_id}. */
  getAiRequest(requestId: string, options?: RequestOptions): Promise<AiRequestRecord> {
    return this.http.json("GET", this.path(`/ai_request/${encodeURIComponent(requestId)}`), undefined, undefined,
      options);
  }

  /** Reads the request, with growing waits, until it is `succeeded` or `failed`, and returns it. */
  async waitAiRequest(requestId: string, options: WaitOptions = {}): Promise<AiRequestRecord> {
    const factor = options.factor ?? 1.5;
    const maxInterval = options.maxIntervalMs ?? 5000;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let interval = options.intervalMs ?? 500;
    for (;;) {
      const record = await this.getAiRequest(requestId, options);
      if (FINISHED.has(record.status)) return record;
      const wait = Math.min(interval, deadline - Date.now());
      if (wait <= 0) {
        throw new AigateError("timeout", 0, `request ${requestId} is still ${record.status}`);
      }
      await sleep(wait, options.signal);
      interval = Math.min(interval * factor, maxInterval);
    }
  }

  /** GET /ai/ai_request/history/query, newest first. */
  aiRequestHistory(query: AiRequestHistoryQuery, options?: RequestOptions): Promise<AiRequestHistory> {
    return this.http.json("GET", this.path("/ai_request/history/query"), undefined, {
      page: query.page,
      page_size: query.pageSize,
      start_time: query.startTime,
      end_time: query.endTime,
      status: query.status?.join(","),
      from_appserver: query.fromAppserver,
    }, options);
  }

  /** POST /ai/ai_request/history/delete (idempotent). */
  deleteAiRequests(requestIds: string[], options?: RequestOptions): Promise<void> {
    return this.http.empty("POST", this.path("/ai_request/history/delete"), { request_ids: requestIds }, options);
  }
}
