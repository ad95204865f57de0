/**
 * The App API's JSON shapes, as aigate sends them (snake_case, as in /bp/openapi.json).
 * Only the items of `chatStream()` are the client's own (camelCase).
 */

export interface TextPart {
  type: "text";
  text: string;
}

export interface ImageUrlPart {
  type: "image_url";
  image_url: { url: string; detail?: string };
}

export interface Message {
  role: "system" | "user" | "assistant";
  content: string | Array<TextPart | ImageUrlPart>;
}

export interface Tokens {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface Asset {
  last_recovery_time: string;
  name: string;
  quantity: number;
  recoverable: boolean;
  recovery_period: number;
  recovery_quantity: number;
  type: string;
  valid_seconds: number;
}

export interface ChatRequest {
  strategy: string;
  messages: Message[];
  response_format?: "" | "text" | "json_object";
  parameters?: Record<string, unknown>;
  chat_id?: string;
}

export interface ChatResponse {
  asset: Asset[];
  chat_id: string;
  current_count: number;
  current_total_count: number;
  reply: { role: "assistant"; content: string };
  tokens: Tokens;
  user_surplus_count: number;
}

/** One item of `chatStream()`. The last one (`isFinish: true`) carries the totals. */
export interface ChatStreamItem {
  chatId: string;
  content: string;
  isFinish: boolean;
  tokens?: Tokens;
  asset?: Asset[];
  currentCount?: number;
  currentTotalCount?: number;
  userSurplusCount?: number;
}

export interface ChatExchange {
  chat_id: string;
  app_id: string;
  user_id: string;
  token: number;
  strategy: string;
  role: string;
  messages: Message[];
  sys_created_time: string;
  sys_updated_time: string;
}

export interface ChatHistoryResponse {
  chat_histories: ChatExchange[];
  total_chat: number;
}

export interface ChatSummary {
  chat_id: string;
  strategy: string;
  title: string;
  sys_created_time: string;
  sys_updated_time: string;
}

export interface ChatsResponse {
  chats: ChatSummary[];
  total: number;
}

export interface InstructionRequest {
  name: string;
  parameters?: Record<string, unknown>;
}

export interface InstructionResponse {
  instruction: { content: string };
  usage: Tokens;
}

export interface AssetsResponse {
  asset: Asset[];
}

export type AiRequestStatus = "pending" | "queueing" | "processing" | "succeeded" | "failed";

export interface UnitPrice {
  input_per_price: number;
  output_per_price: number;
  input_token: number;
  output_token: number;
}

export interface AiRequestSubmit {
  strategy: string;
  parameters?: Record<string, unknown>;
}

export interface AiRequestRecord {
  request_id: string;
  platform_id: string;
  platform: string;
  module: string;
  strategy: string;
  status: AiRequestStatus;
  response: string;
  error: string;
  unit_price: UnitPrice;
  custom_response: Record<string, unknown> | null;
  created_time: string;
  updated_time: string;
}

export interface AiRequestHistory {
  data: AiRequestRecord[];
  has_more: boolean;
}

export interface AiRequestHistoryQuery {
  page: number;
  pageSize: number;
  /** Exclusive bounds on the created time, ms since the epoch. */
  startTime?: number;
  endTime?: number;
  status?: AiRequestStatus[];
  /** true: only calls made through the app server API; false: only the client's. */
  fromAppserver?: boolean;
}

export interface TokenResponse {
  token: string;
  expires_at: string;
}

export interface TokensRevoked {
  user_id: string;
  revoked_at: string;
}

export interface GrantRequest {
  asset: string;
  quantity: number;
  idempotency_key: string;
}

export interface GrantResponse {
  granted: boolean;
  asset: Asset[];
}
