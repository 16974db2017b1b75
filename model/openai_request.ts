// The body of an OpenAI `POST /v1/chat/completions`, checked field by field (what MiniMind's
// serve_openai_api.py reads: messages, temperature, top_p, max_tokens, stream, tools, open_thinking /
// chat_template_kwargs), and OpenAI's error shape. A bad field is an ApiError whose message names it.
import type { ChatMessage } from '../data/tokenizer.js';

/** OpenAI's error body: `{ error: { message, type, param, code } }` with an HTTP status. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null, readonly type = 'invalid_request_error') {
    super(message);
  }
  body(): { error: { message: string; type: string; param: string | null; code: null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: null } };
  }
}

export interface CompletionRequest {
  messages: ChatMessage[];
  temperature: number;
  topP: number;
  maxTokens: number;
  stream: boolean;
  seed?: number;
  tools?: unknown[];
  openThinking: boolean;
}

const ROLES = ['system', 'user', 'assistant'];

/** MiniMind's ChatRequest defaults (temperature 0.7, top_p 0.92, max_tokens 8192), but stream defaults to
 *  false as in OpenAI's API: MiniMind's true would hand a stream to clients that did not ask for one. */
export function parseCompletionRequest(text: string): CompletionRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON (${(e as Error).message})`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (b.messages === undefined) throw new ApiError(400, "'messages' is a required property", 'messages');
  if (!Array.isArray(b.messages) || !b.messages.length) throw new ApiError(400, "'messages' must be a non-empty array", 'messages');
  const messages = b.messages.map((m, i): ChatMessage => {
    const at = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ApiError(400, `'${at}' must be an object`, at);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || !ROLES.includes(role)) {
      throw new ApiError(400, `'${at}.role' must be one of ${ROLES.map((r) => `'${r}'`).join(', ')}, got ${JSON.stringify(role)}`, `${at}.role`);
    }
    if (typeof content !== 'string') throw new ApiError(400, `'${at}.content' must be a string, got ${JSON.stringify(content)}`, `${at}.content`);
    return { role, content };
  });
  const num = (key: string, def: number, ok: (v: number) => boolean, range: string): number => {
    const v = b[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ApiError(400, `'${key}' must be a number, got ${JSON.stringify(v)}`, key);
    if (!ok(v)) throw new ApiError(400, `'${key}' must be ${range}, got ${v}`, key);
    return v;
  };
  const bool = (key: string): boolean => {
    const v = b[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') throw new ApiError(400, `'${key}' must be a boolean, got ${JSON.stringify(v)}`, key);
    return v;
  };
  if (b.tools !== undefined && b.tools !== null && !Array.isArray(b.tools)) throw new ApiError(400, "'tools' must be an array", 'tools');
  const kw = b.chat_template_kwargs;
  if (kw !== undefined && kw !== null && (typeof kw !== 'object' || Array.isArray(kw))) throw new ApiError(400, "'chat_template_kwargs' must be an object", 'chat_template_kwargs');
  const kwargs = (kw ?? {}) as Record<string, unknown>;
  const seed = b.seed === undefined || b.seed === null ? undefined : num('seed', 0, Number.isInteger, 'an integer');
  return {
    messages,
    temperature: num('temperature', 0.7, (v) => v >= 0 && v <= 2, 'from 0 to 2'),
    topP: num('top_p', 0.92, (v) => v > 0 && v <= 1, 'above 0 and at most 1'),
    maxTokens: num('max_tokens', 8192, (v) => Number.isInteger(v) && v >= 1, 'a positive integer'),
    stream: bool('stream'),
    seed,
    tools: Array.isArray(b.tools) && b.tools.length ? b.tools : undefined,
    // MiniMind takes open_thinking, or chat_template_kwargs.open_thinking / enable_thinking.
    openThinking: bool('open_thinking') || kwargs.open_thinking === true || kwargs.enable_thinking === true,
  };
}
