// A Hugging Face tokenizer directory (tokenizer.json + tokenizer_config.json) loaded with
// @huggingface/tokenizers, and its Jinja `chat_template` rendered with @huggingface/jinja the way
// transformers' `apply_chat_template(messages, tokenize=False, ...)` does (spec §6).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { ByteLevelBpe } from './bytelevel.js';
import { compileTemplate, Unsupported } from './jinja.js';

/** One chat message as the templates read it. `tool_calls` may be a JSON string (MiniMind data). */
export interface ChatMessage {
  role: string;
  content?: string | null;
  tool_calls?: unknown;
  reasoning_content?: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  addGenerationPrompt?: boolean;
  /** Tool schemas (an array, or a JSON string of one). */
  tools?: unknown;
  /** Extra template variables, e.g. `{ enable_thinking: false }`. */
  extra?: Record<string, unknown>;
}

export interface ChatTokenizer {
  readonly dir: string;
  /** Largest token id + 1 (model vocab and added tokens). */
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  /** ids of `${bos_token}assistant\n`: where a trained assistant span starts (computed, never hard-coded). */
  readonly assistantHeaderIds: number[];
  /** ids of `${eos_token}\n`: the last ids of a trained assistant span. */
  readonly imEndIds: number[];
  /** sha1 of both files: keys caches that depend on the tokenizer. */
  readonly fingerprint: string;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
  tokenToId(token: string): number | undefined;
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string;
}

/** JSON strings in `tools` / `tool_calls` are parsed first, as MiniMind's SFTDataset does before rendering. */
export function parseJsonField(value: unknown, what: string): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new Error(`${what} is a string but not valid JSON (${(e as Error).message})`);
  }
}

class HFChatTokenizer implements ChatTokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly assistantHeaderIds: number[];
  readonly imEndIds: number[];
  private readonly template: Template | undefined;
  /** The same template compiled (jinja.ts), when it is inside the compiled subset. */
  private readonly compiled: ((vars: Record<string, unknown>) => string) | undefined;
  private readonly specials: Record<string, string>;

  constructor(
    readonly dir: string, private readonly tok: Tokenizer, config: Record<string, unknown>, readonly fingerprint: string,
    /** The exact, faster encoder when it models this tokenizer.json (see bytelevel.ts). */
    private readonly fast: ByteLevelBpe | undefined,
  ) {
    const name = (key: string): string => {
      const v = config[key];
      const s = typeof v === 'string' ? v : (v as { content?: string } | undefined)?.content;
      if (!s) throw new Error(`${join(dir, 'tokenizer_config.json')}: missing "${key}"`);
      return s;
    };
    const id = (key: string): number => {
      const t = tok.token_to_id(name(key));
      if (t === undefined) throw new Error(`${join(dir, 'tokenizer.json')}: ${key} "${name(key)}" is not a token`);
      return t;
    };
    this.specials = { bos_token: name('bos_token'), eos_token: name('eos_token'), pad_token: name('pad_token') };
    if (config.unk_token) this.specials.unk_token = name('unk_token');
    this.bosId = id('bos_token');
    this.eosId = id('eos_token');
    this.padId = id('pad_token');
    let maxId = 0;
    for (const v of tok.get_vocab(true).values()) maxId = Math.max(maxId, v);
    this.vocabSize = maxId + 1;
    this.assistantHeaderIds = this.encode(`${this.specials.bos_token}assistant\n`);
    this.imEndIds = this.encode(`${this.specials.eos_token}\n`);
    const src = config.chat_template;
    this.template = typeof src === 'string' ? new Template(src) : undefined;
    const compiled = typeof src === 'string' ? compileTemplate(src) : undefined;
    this.compiled = typeof compiled === 'function' ? compiled : undefined;
  }

  encode(text: string): number[] {
    return this.fast ? this.fast.encode(text) : this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return ''; // the library throws on [], Python's decode returns ''
    return this.tok.decode(Array.from(ids), { skip_special_tokens: false });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (!this.template) throw new Error(`${join(this.dir, 'tokenizer_config.json')}: no "chat_template"`);
    const msgs = messages.map((m, i) =>
      m.tool_calls === undefined ? m : { ...m, tool_calls: parseJsonField(m.tool_calls, `message ${i + 1}: tool_calls`) });
    const vars: Record<string, unknown> = {
      messages: msgs,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      ...this.specials,
      ...opts.extra,
    };
    // transformers passes tools=None when absent; an undefined variable reads as false in `{% if tools %}` too.
    const tools = parseJsonField(opts.tools, 'tools');
    if (tools !== undefined && tools !== null) vars.tools = tools;
    if (this.compiled) {
      try {
        return this.compiled(vars);
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
      }
    }
    return this.template.render(vars);
  }
}

/** Load `dir/tokenizer.json` + `dir/tokenizer_config.json`. */
export async function loadTokenizer(dir: string): Promise<ChatTokenizer> {
  const read = async (f: string): Promise<string> => {
    try {
      return await readFile(join(dir, f), 'utf8');
    } catch (e) {
      throw new Error(`tokenizer: cannot read ${join(dir, f)} (${(e as Error).message})`);
    }
  };
  const [tokJson, cfgJson] = await Promise.all([read('tokenizer.json'), read('tokenizer_config.json')]);
  const parse = (s: string, f: string): Record<string, unknown> => {
    try {
      return JSON.parse(s) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`tokenizer: ${join(dir, f)} is not valid JSON (${(e as Error).message})`);
    }
  };
  const config = parse(cfgJson, 'tokenizer_config.json'), json = parse(tokJson, 'tokenizer.json');
  const fingerprint = createHash('sha1').update(tokJson).update('\0').update(cfgJson).digest('hex');
  const fast = ByteLevelBpe.fromTokenizerJson(json);
  return new HFChatTokenizer(dir, new Tokenizer(json, config), config, fingerprint, typeof fast === 'string' ? undefined : fast);
}
