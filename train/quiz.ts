// The built-in run's check that fine-tuning worked: held-out questions of the generated data's task
// families (data/synth.ts), answered greedily after training and compared with the computed answers.
import { readFileSync } from 'node:fs';
import { mulberry32 } from '../runtime/random.js';
import { FAMILIES, isHeldOut, type Lang } from '../data/synth.js';
import type { ChatTokenizer, ChatMessage } from '../data/tokenizer.js';
import type { MiniMind } from '../model/minimind.js';
import { generate } from '../model/generate.js';

export interface QuizItem { family: string; question: string; answer: string }
export interface QuizAnswer extends QuizItem { got: string; correct: boolean }

/** `perFamily` held-out questions of each family (data/synth.ts leaves them out of the generated
 *  data), alternating English and Chinese; checked against the training file `dataPath` too. */
export function heldOutQuiz(dataPath: string, perFamily: number, seed: number): QuizItem[] {
  const seen = new Set<string>();
  for (const line of readFileSync(dataPath, 'utf8').split('\n')) {
    if (!line) continue;
    for (const m of (JSON.parse(line) as { conversations: ChatMessage[] }).conversations) if (m.role === 'user') seen.add(String(m.content));
  }
  const r = mulberry32(seed);
  const items: QuizItem[] = [];
  for (const [family, make] of Object.entries(FAMILIES)) {
    for (let k = 0, tries = 0; k < perFamily; tries++) {
      if (tries === 10_000 * perFamily) throw new Error(`quiz: fewer than ${perFamily} held-out ${family} questions outside ${dataPath}`);
      const lang: Lang = k % 2 ? 'zh' : 'en';
      const { q, a } = make(r, lang);
      if (!isHeldOut(q) || seen.has(q)) continue;
      seen.add(q);
      items.push({ family, question: q, answer: a });
      k++;
    }
  }
  return items;
}

/** Greedy answers (at most `maxNewTokens`, stopping at eos); right when equal to the computed
 *  answer up to surrounding white space. */
export async function askQuiz(model: MiniMind, tok: ChatTokenizer, items: QuizItem[], maxNewTokens = 48): Promise<QuizAnswer[]> {
  const out: QuizAnswer[] = [];
  for (const it of items) {
    const ids = tok.encode(tok.applyChatTemplate([{ role: 'user', content: it.question }], { addGenerationPrompt: true }));
    const gen: number[] = [];
    for await (const id of generate(model, ids, { maxNewTokens, temperature: 0, eosId: tok.eosId })) if (id !== tok.eosId) gen.push(id);
    const got = tok.decode(gen).trim();
    out.push({ ...it, got, correct: got === it.answer.trim() });
  }
  return out;
}

/** "k of n correct" with the count per family. */
export function quizSummary(answers: QuizAnswer[]): string {
  const fam = new Map<string, [number, number]>();
  for (const a of answers) {
    const c = fam.get(a.family) ?? [0, 0];
    fam.set(a.family, [c[0] + (a.correct ? 1 : 0), c[1] + 1]);
  }
  const k = answers.filter((a) => a.correct).length;
  return `${k} of ${answers.length} correct (${[...fam].map(([f, [c, n]]) => `${f} ${c}/${n}`).join(', ')})`;
}
