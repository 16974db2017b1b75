// One SFT line's `conversations` (spec §7): checked, turned into the template's (messages, tools) the
// way MiniMind's SFTDataset.create_chat_prompt does, and optionally augmented as its
// pre_processing_chat / post_processing_chat do.
import { parseJsonField, type ChatMessage } from './tokenizer.js';

export const ROLES = ['system', 'user', 'assistant', 'tool'] as const;

/** Why a parsed line cannot be a conversation, or undefined when it can (structure only; the
 *  "no trainable token" check needs the tokenizer and lives in sft.ts). */
export function conversationProblem(line: unknown): string | undefined {
  if (typeof line !== 'object' || line === null || Array.isArray(line)) return 'not a JSON object';
  const conv = (line as { conversations?: unknown }).conversations;
  if (!Array.isArray(conv)) return 'no "conversations" array';
  let assistant = false;
  for (const [k, m] of conv.entries()) {
    const at = `message ${k + 1}`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return `${at} is not an object`;
    const { role, content, tools, tool_calls } = m as ChatMessage;
    if (!(ROLES as readonly unknown[]).includes(role)) {
      return `unknown role ${JSON.stringify(role)} in ${at} (expected ${ROLES.join(', ')})`;
    }
    if (content !== undefined && content !== null && typeof content !== 'string') return `${at}: content is not a string`;
    for (const [field, v] of [['tools', tools], ['tool_calls', tool_calls]] as const) {
      try {
        parseJsonField(v, `${at}: ${field}`);
      } catch (e) {
        return (e as Error).message;
      }
    }
    assistant ||= role === 'assistant';
  }
  return assistant ? undefined : 'no assistant turn';
}

/** MiniMind's create_chat_prompt: tools come from a system message's `tools` (MiniMind2 data also used
 *  `functions`), parsed when they are a JSON string; `tool_calls` strings are parsed by the tokenizer. */
export function templateInput(conversations: ChatMessage[]): { messages: ChatMessage[]; tools: unknown } {
  let tools: unknown;
  for (const m of conversations) {
    if (m.role === 'system' && (m.tools || m.functions)) tools = parseJsonField(m.tools || m.functions, 'tools');
  }
  return { messages: conversations, tools };
}

/** MiniMind's pre_processing_chat pool. */
export const SYSTEM_PROMPTS = [
  '你是一个知识丰富的AI，尽力为用户提供准确的信息。',
  '你是minimind，一个小巧但有用的语言模型。',
  '你是一个专业的AI助手，请提供有价值的回答。',
  '你是minimind，请尽力帮助用户解决问题。',
  '你是一个可靠的AI，请给出准确的回答。',
  'You are a helpful AI assistant.',
  'You are minimind, a lightweight intelligent assistant.',
  "You are a friendly chatbot. Please answer the user's questions carefully.",
  'You are a knowledgeable AI. Try your best to provide accurate information.',
  'You are minimind, a small but useful language model.',
];

export interface AugmentOptions {
  /** Chance to prepend a random system prompt when there is none (MiniMind: 0.2). */
  addSystemRatio?: number;
  /** Chance to KEEP an empty `<think>\n\n</think>\n\n` block (MiniMind: 0.2, i.e. stripped 80% of the time). */
  emptyThinkRatio?: number;
}

/** pre_processing_chat: tool-use conversations are left alone. `rand` is a seeded uniform [0, 1). */
export function addRandomSystem(conv: ChatMessage[], rand: () => number, ratio = 0.2): ChatMessage[] {
  if (conv.some((m) => m.tools) || conv.length === 0 || conv[0].role === 'system') return conv;
  if (rand() >= ratio) return conv;
  const content = SYSTEM_PROMPTS[Math.floor(rand() * SYSTEM_PROMPTS.length)];
  return [{ role: 'system', content }, ...conv];
}

const EMPTY_THINK = '<think>\n\n</think>\n\n';

/** post_processing_chat: drop every empty think block unless a draw falls under `ratio`. */
export function stripEmptyThink(rendered: string, rand: () => number, ratio = 0.2): string {
  if (!rendered.includes(EMPTY_THINK)) return rendered;
  return rand() > ratio ? rendered.replaceAll(EMPTY_THINK, '') : rendered;
}
