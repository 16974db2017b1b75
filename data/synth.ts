// Templated question/answer pairs in English and Chinese for the built-in default data: counting, unit
// conversion, word tasks and capitals from the tables below. Every answer is computed, so a model that
// learns the data learns something checkable. All draws come from the `rand` passed in (seeded).
// The families are ones a 0.6M-parameter model learns in the built-in run's 1000 steps (copying from
// the prompt, a lookup seen in other phrasings): two-digit sums, letter counts, reversed words and
// reversed facts were tried there and stayed near 0 right.
import { createHash } from 'node:crypto';

export type Rand = () => number;
export type Lang = 'en' | 'zh';
export interface QA { q: string; a: string }

const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

// [country, 国家, capital, 首都]
export const COUNTRIES: [string, string, string, string][] = [
  ['France', '法国', 'Paris', '巴黎'], ['Germany', '德国', 'Berlin', '柏林'], ['Italy', '意大利', 'Rome', '罗马'],
  ['Spain', '西班牙', 'Madrid', '马德里'], ['the United Kingdom', '英国', 'London', '伦敦'],
  ['Russia', '俄罗斯', 'Moscow', '莫斯科'], ['Greece', '希腊', 'Athens', '雅典'], ['Portugal', '葡萄牙', 'Lisbon', '里斯本'],
  ['the Netherlands', '荷兰', 'Amsterdam', '阿姆斯特丹'], ['Sweden', '瑞典', 'Stockholm', '斯德哥尔摩'],
  ['Norway', '挪威', 'Oslo', '奥斯陆'], ['Finland', '芬兰', 'Helsinki', '赫尔辛基'], ['Poland', '波兰', 'Warsaw', '华沙'],
  ['Austria', '奥地利', 'Vienna', '维也纳'], ['Ireland', '爱尔兰', 'Dublin', '都柏林'], ['Denmark', '丹麦', 'Copenhagen', '哥本哈根'],
  ['China', '中国', 'Beijing', '北京'], ['Japan', '日本', 'Tokyo', '东京'], ['South Korea', '韩国', 'Seoul', '首尔'],
  ['India', '印度', 'New Delhi', '新德里'], ['Thailand', '泰国', 'Bangkok', '曼谷'], ['Vietnam', '越南', 'Hanoi', '河内'],
  ['Indonesia', '印度尼西亚', 'Jakarta', '雅加达'], ['the Philippines', '菲律宾', 'Manila', '马尼拉'],
  ['Turkey', '土耳其', 'Ankara', '安卡拉'], ['Iran', '伊朗', 'Tehran', '德黑兰'],
  ['Egypt', '埃及', 'Cairo', '开罗'], ['Kenya', '肯尼亚', 'Nairobi', '内罗毕'], ['Nigeria', '尼日利亚', 'Abuja', '阿布贾'],
  ['Ethiopia', '埃塞俄比亚', 'Addis Ababa', '亚的斯亚贝巴'], ['Morocco', '摩洛哥', 'Rabat', '拉巴特'],
  ['the United States', '美国', 'Washington', '华盛顿'], ['Canada', '加拿大', 'Ottawa', '渥太华'],
  ['Mexico', '墨西哥', 'Mexico City', '墨西哥城'], ['Cuba', '古巴', 'Havana', '哈瓦那'],
  ['Brazil', '巴西', 'Brasilia', '巴西利亚'], ['Argentina', '阿根廷', 'Buenos Aires', '布宜诺斯艾利斯'],
  ['Peru', '秘鲁', 'Lima', '利马'], ['Chile', '智利', 'Santiago', '圣地亚哥'],
  ['Australia', '澳大利亚', 'Canberra', '堪培拉'], ['New Zealand', '新西兰', 'Wellington', '惠灵顿'],
];

// [unit, 单位, target unit, 目标单位, factor]: powers of ten, so the answer is the number with zeros appended.
export const UNITS: [string, string, string, string, number][] = [
  ['kilometers', '千米', 'meters', '米', 1000], ['meters', '米', 'centimeters', '厘米', 100],
  ['centimeters', '厘米', 'millimeters', '毫米', 10], ['kilograms', '千克', 'grams', '克', 1000],
  ['liters', '升', 'milliliters', '毫升', 1000], ['tons', '吨', 'kilograms', '千克', 1000],
];

export const WORDS = (
  'apple banana cherry grape lemon mango melon orange peach pear plum river ocean forest desert island mountain ' +
  'valley garden window door table chair pencil paper book letter music piano guitar violin rocket planet comet ' +
  'galaxy robot computer keyboard mouse screen cloud rain snow storm thunder summer winter autumn spring morning ' +
  'evening tiger lion zebra horse rabbit turtle dolphin whale eagle parrot spider monkey camel kitten puppy dragon ' +
  'bridge castle tower market school doctor farmer singer writer painter teacher student yellow purple silver ' +
  'golden bright quiet happy simple little strong gentle coffee butter cookie bread pizza salad noodle tomato potato ' +
  'carrot onion pepper sugar candle lantern mirror pillow blanket jacket basket bottle button ticket wallet'
).split(' ');

function counting(r: Rand, lang: Lang): QA {
  const up = r() < 0.5;
  const a = int(r, 1, 98), b = up ? a + 1 : a - 1, sym = up ? '+' : '-';
  if (lang === 'en') {
    const q = pick(r, up ? [`What is ${a} + 1?`, `What number comes after ${a}?`, `Count one up from ${a}.`]
      : [`What is ${a} - 1?`, `What number comes before ${a}?`, `Count one down from ${a}.`]);
    return { q, a: `${a} ${sym} 1 = ${b}.` };
  }
  const q = pick(r, up ? [`${a}加1等于多少？`, `${a}的下一个数是几？`, `从${a}往上数一个是几？`]
    : [`${a}减1等于多少？`, `${a}的前一个数是几？`, `从${a}往下数一个是几？`]);
  return { q, a: `${a} ${sym} 1 = ${b}。` };
}

function conversion(r: Rand, lang: Lang): QA {
  const [u, uz, t, tz, f] = pick(r, UNITS);
  const x = int(r, 1, 40);
  if (lang === 'en') {
    const q = pick(r, [`How many ${t} are in ${x} ${u}?`, `Convert ${x} ${u} to ${t}.`]);
    return { q, a: `${x} ${u} is ${x * f} ${t}.` };
  }
  const q = pick(r, [`${x}${uz}等于多少${tz}？`, `把${x}${uz}换算成${tz}。`]);
  return { q, a: `${x}${uz}等于${x * f}${tz}。` };
}

/** Copying words from the prompt: one said twice, or the first or last of three. */
function words(r: Rand, lang: Lang): QA {
  const [w1, w2, w3] = [pick(r, WORDS), pick(r, WORDS), pick(r, WORDS)];
  const kind = int(r, 0, 2);
  if (kind === 0) {
    return lang === 'en'
      ? { q: pick(r, [`Say "${w1}" twice.`, `Repeat the word "${w1}" two times.`]), a: `${w1} ${w1}` }
      : { q: pick(r, [`把 ${w1} 说两遍。`, `重复两次：${w1}`]), a: `${w1} ${w1}` };
  }
  const first = kind === 1, w = first ? w1 : w3;
  return lang === 'en'
    ? { q: `Which word comes ${first ? 'first' : 'last'}: ${w1}, ${w2}, ${w3}?`, a: `${w} comes ${first ? 'first' : 'last'}.` }
    : { q: `${w1}、${w2}、${w3} 中${first ? '第一个' : '最后一个'}词是什么？`, a: `${first ? '第一个' : '最后一个'}词是 ${w}。` };
}

function capital(r: Rand, lang: Lang): QA {
  const [c, cz, cap, capz] = pick(r, COUNTRIES);
  if (lang === 'en') {
    const q = pick(r, [`What is the capital of ${c}?`, `Name the capital city of ${c}.`, `Which city is the capital of ${c}?`]);
    return { q, a: `The capital of ${c} is ${cap}.` };
  }
  const q = pick(r, [`${cz}的首都是哪里？`, `${cz}的首都是什么城市？`, `哪座城市是${cz}的首都？`]);
  return { q, a: `${cz}的首都是${capz}。` };
}

/** The task families, by name (the built-in run's quiz counts right answers per family). */
export const FAMILIES: Record<string, (r: Rand, lang: Lang) => QA> = { counting, conversion, words, capital };
const TASKS = Object.values(FAMILIES);

/** Whether a question is held out of the generated data: 1 in 16, by a hash of its text, so the
 *  built-in run's quiz (train/quiz.ts) can ask questions of every family that training never saw. */
export function isHeldOut(q: string): boolean {
  return createHash('sha1').update(q).digest()[0] % 16 === 0;
}

/** One question/answer pair of a random task (never a held-out question). */
export function randomQA(r: Rand, lang: Lang): QA {
  for (;;) {
    const qa = pick(r, TASKS)(r, lang);
    if (!isHeldOut(qa.q)) return qa;
  }
}

/** A pretrain line: a few true statements (the answers of random tasks) in one language. */
export function randomStatements(r: Rand, lang: Lang): string {
  return Array.from({ length: int(r, 2, 5) }, () => randomQA(r, lang).a).join(lang === 'en' ? ' ' : '');
}

export const SYSTEMS: Record<Lang, string[]> = {
  en: ['You are a careful assistant. Answer briefly.', 'You are MiniMind, a small but useful language model.'],
  zh: ['你是一个认真的助手，请简短回答。', '你是MiniMind，一个小巧但有用的语言模型。'],
};

/** A conversation: 1 turn (sometimes 2) in one language, sometimes with a system prompt. */
export function randomConversation(r: Rand): { role: string; content: string }[] {
  const lang: Lang = r() < 0.5 ? 'en' : 'zh';
  const out: { role: string; content: string }[] = [];
  if (r() < 0.15) out.push({ role: 'system', content: pick(r, SYSTEMS[lang]) });
  const turns = r() < 0.9 ? 1 : 2;
  for (let t = 0; t < turns; t++) {
    const { q, a } = randomQA(r, lang);
    out.push({ role: 'user', content: q }, { role: 'assistant', content: a });
  }
  return out;
}
