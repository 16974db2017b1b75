// The trainer's progress line (train/progress.ts) and the built-in run's held-out quiz (train/quiz.ts).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Progress, duration } from '../train/progress.js';
import { heldOutQuiz, quizSummary, type QuizAnswer } from '../train/quiz.js';
import { preset } from '../model/config.js';
import { stepFlops } from '../model/flops.js';
import { FAMILIES } from '../data/synth.js';
import { mulberry32 } from '../runtime/random.js';
import { randomConversation } from '../data/synth.js';

const s = suite('progress');

s('rates count from the end of the first step; ETA, share of the run and of the FMA peak follow', () => {
  let ms = 0;
  const cfg = preset('tiny');
  const p = new Progress(100, 10, 110, 30_000, () => ms);
  const at = (B: number, T: number): [number, number] => [B * T, stepFlops(cfg, B, T)];
  assert.is(p.step(11, ...at(4, 32), 2, false), undefined, 'off a terminal the first step prints nothing');
  ms = 10_000;
  assert.is(p.step(12, ...at(400, 32), 2, false), undefined, 'nor anything before 30 s have passed');
  ms = 20_000;
  assert.is(p.step(13, ...at(400, 32), 2, false), undefined);
  ms = 40_000; // 3 steps of 400×32 tokens in 40 s since the first one ended
  const line = p.step(14, ...at(400, 32), 1.5, false)!;
  const gflops = (3 * stepFlops(cfg, 400, 32)) / 40 / 1e9;
  assert.ok(line.startsWith('step 14/110 (4%), loss 1.5000, 960 tokens/s'), line);
  assert.ok(line.includes(`, ${gflops.toFixed(1)} GFLOP/s = ${gflops.toFixed(0)}% of the FMA peak (100), `), line);
  assert.ok(line.endsWith(`ETA ${duration((96 * 40) / 3)}`), line);
  assert.ok(p.step(15, ...at(400, 32), 1.5, true)!.startsWith('step 15/110'), 'on a terminal every step gets a line');
  assert.is(p.step(16, ...at(4, 32), 1.5, true, true), undefined, 'but not one that printed its log line');
  ms = 60_000;
  assert.is(p.step(17, ...at(4, 32), 1.5, false, true), undefined, 'off a terminal the next line is due 30 s after the last');
  ms = 70_000;
  assert.ok(p.step(18, ...at(4, 32), 1.5, false, true)!.startsWith('step 18/110'), 'log lines or not');
});

s('duration is written in s, m s or h m', () => {
  assert.equal([duration(0), duration(59.4), duration(75), duration(4000)], ['0s', '59s', '1m 15s', '1h 6m']);
});

s('held-out quiz: per family, no question of the training file, deterministic', () => {
  const dir = mkdtempSync(join(tmpdir(), 'quiz-'));
  const data = join(dir, 'sft.jsonl');
  const r = mulberry32(3);
  const convs = Array.from({ length: 2000 }, () => randomConversation(r));
  writeFileSync(data, convs.map((c) => JSON.stringify({ conversations: c })).join('\n') + '\n');
  const seen = new Set(convs.flat().filter((m) => m.role === 'user').map((m) => m.content));
  const items = heldOutQuiz(data, 3, 9);
  const families = Object.keys(FAMILIES);
  assert.equal(items.map((i) => i.family), families.flatMap((f) => [f, f, f]));
  for (const it of items) assert.not.ok(seen.has(it.question), it.question);
  assert.equal(heldOutQuiz(data, 3, 9), items);
  assert.not.equal(heldOutQuiz(data, 3, 10), items);
});

s('quiz summary counts right answers per family', () => {
  const a = (family: string, correct: boolean): QuizAnswer => ({ family, question: 'q', answer: 'x', got: correct ? 'x' : 'y', correct });
  assert.is(quizSummary([a('fact', true), a('fact', false), a('string', true)]), '2 of 3 correct (fact 1/2, string 1/1)');
});

s.run();
