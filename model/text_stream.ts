// Token ids to text as they are generated: the text each new id adds, held back while it ends in a split
// UTF-8 character (a byte-level token can carry part of one), so a stream never shows U+FFFD halves.
import type { ChatTokenizer } from '../data/tokenizer.js';

export class TextStream {
  readonly ids: number[] = [];
  private shown = '';
  constructor(private readonly tok: ChatTokenizer) {}

  /** The new text after `id` ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const text = this.tok.decode(this.ids);
    if (text.endsWith('\uFFFD')) return '';
    const add = text.slice(this.shown.length);
    this.shown = text;
    return add;
  }

  /** What is left at the end (an incomplete character as decoded), and the whole text. */
  finish(): { rest: string; text: string } {
    const text = this.tok.decode(this.ids);
    const rest = text.slice(this.shown.length);
    this.shown = text;
    return { rest, text };
  }
}
