// Templated question/answer pairs in English and Chinese for the built-in default data: arithmetic, unit
// conversion, string tasks and facts from the tables below. Every answer is computed, so a model that
// learns the data learns something checkable. All draws come from the `rand` passed in (seeded).
import { createHash } from 'node:crypto';

export type Rand = () => number;
export type Lang = 'en' | 'zh';
export interface QA { q: string; a: string }

const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

// [country, 国家, capital, 首都, continent index]
export const COUNTRIES: [string, string, string, string, number][] = [
  ['France', '法国', 'Paris', '巴黎', 0], ['Germany', '德国', 'Berlin', '柏林', 0], ['Italy', '意大利', 'Rome', '罗马', 0],
  ['Spain', '西班牙', 'Madrid', '马德里', 0], ['the United Kingdom', '英国', 'London', '伦敦', 0],
  ['Russia', '俄罗斯', 'Moscow', '莫斯科', 0], ['Greece', '希腊', 'Athens', '雅典', 0], ['Portugal', '葡萄牙', 'Lisbon', '里斯本', 0],
  ['the Netherlands', '荷兰', 'Amsterdam', '阿姆斯特丹', 0], ['Sweden', '瑞典', 'Stockholm', '斯德哥尔摩', 0],
  ['Norway', '挪威', 'Oslo', '奥斯陆', 0], ['Finland', '芬兰', 'Helsinki', '赫尔辛基', 0], ['Poland', '波兰', 'Warsaw', '华沙', 0],
  ['Austria', '奥地利', 'Vienna', '维也纳', 0], ['Ireland', '爱尔兰', 'Dublin', '都柏林', 0], ['Denmark', '丹麦', 'Copenhagen', '哥本哈根', 0],
  ['China', '中国', 'Beijing', '北京', 1], ['Japan', '日本', 'Tokyo', '东京', 1], ['South Korea', '韩国', 'Seoul', '首尔', 1],
  ['India', '印度', 'New Delhi', '新德里', 1], ['Thailand', '泰国', 'Bangkok', '曼谷', 1], ['Vietnam', '越南', 'Hanoi', '河内', 1],
  ['Indonesia', '印度尼西亚', 'Jakarta', '雅加达', 1], ['the Philippines', '菲律宾', 'Manila', '马尼拉', 1],
  ['Turkey', '土耳其', 'Ankara', '安卡拉', 1], ['Iran', '伊朗', 'Tehran', '德黑兰', 1],
  ['Egypt', '埃及', 'Cairo', '开罗', 2], ['Kenya', '肯尼亚', 'Nairobi', '内罗毕', 2], ['Nigeria', '尼日利亚', 'Abuja', '阿布贾', 2],
  ['Ethiopia', '埃塞俄比亚', 'Addis Ababa', '亚的斯亚贝巴', 2], ['Morocco', '摩洛哥', 'Rabat', '拉巴特', 2],
  ['the United States', '美国', 'Washington', '华盛顿', 3], ['Canada', '加拿大', 'Ottawa', '渥太华', 3],
  ['Mexico', '墨西哥', 'Mexico City', '墨西哥城', 3], ['Cuba', '古巴', 'Havana', '哈瓦那', 3],
  ['Brazil', '巴西', 'Brasilia', '巴西利亚', 4], ['Argentina', '阿根廷', 'Buenos Aires', '布宜诺斯艾利斯', 4],
  ['Peru', '秘鲁', 'Lima', '利马', 4], ['Chile', '智利', 'Santiago', '圣地亚哥', 4],
  ['Australia', '澳大利亚', 'Canberra', '堪培拉', 5], ['New Zealand', '新西兰', 'Wellington', '惠灵顿', 5],
];
export const CONTINENTS: [string, string][] = [
  ['Europe', '欧洲'], ['Asia', '亚洲'], ['Africa', '非洲'], ['North America', '北美洲'], ['South America', '南美洲'], ['Oceania', '大洋洲'],
];

// [unit, 单位, target unit, 目标单位, factor]
export const UNITS: [string, string, string, string, number][] = [
  ['kilometers', '千米', 'meters', '米', 1000], ['meters', '米', 'centimeters', '厘米', 100],
  ['kilograms', '千克', 'grams', '克', 1000], ['hours', '小时', 'minutes', '分钟', 60],
  ['minutes', '分钟', 'seconds', '秒', 60], ['days', '天', 'hours', '小时', 24], ['liters', '升', 'milliliters', '毫升', 1000],
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

function arithmetic(r: Rand, lang: Lang): QA {
  const op = pick(r, ['+', '-', '*'] as const);
  let a = int(r, 0, 99), b = int(r, 0, 99);
  if (op === '-' && b > a) [a, b] = [b, a];
  if (op === '*') [a, b] = [int(r, 2, 19), int(r, 2, 9)];
  const c = op === '+' ? a + b : op === '-' ? a - b : a * b;
  const sym = op === '*' ? '×' : op;
  if (lang === 'en') {
    const word = { '+': 'plus', '-': 'minus', '*': 'times' }[op];
    const q = pick(r, [`What is ${a} ${sym} ${b}?`, `Compute ${a} ${word} ${b}.`, `${a} ${sym} ${b} = ?`]);
    return { q, a: `${a} ${sym} ${b} = ${c}.` };
  }
  const word = { '+': '加', '-': '减', '*': '乘以' }[op];
  const q = pick(r, [`${a}${word}${b}等于多少？`, `计算 ${a} ${sym} ${b}。`, `${a} ${sym} ${b} 等于几？`]);
  return { q, a: `${a} ${sym} ${b} = ${c}。` };
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

function stringTask(r: Rand, lang: Lang): QA {
  const w = pick(r, WORDS);
  const kind = int(r, 0, 3);
  if (kind === 0) {
    const rev = [...w].reverse().join('');
    return lang === 'en'
      ? { q: pick(r, [`Reverse the word "${w}".`, `Spell "${w}" backwards.`]), a: `"${w}" reversed is "${rev}".` }
      : { q: pick(r, [`把单词 ${w} 倒过来写。`, `${w} 反过来怎么写？`]), a: `${w} 倒过来是 ${rev}。` };
  }
  if (kind === 1) {
    const up = w.toUpperCase();
    return lang === 'en'
      ? { q: pick(r, [`Write "${w}" in capital letters.`, `Uppercase "${w}".`]), a: `"${w}" in capital letters is "${up}".` }
      : { q: pick(r, [`把 ${w} 转成大写。`, `${w} 的大写形式是什么？`]), a: `${w} 的大写是 ${up}。` };
  }
  if (kind === 2) {
    return lang === 'en'
      ? { q: pick(r, [`How many letters are in "${w}"?`, `Count the letters in "${w}".`]), a: `"${w}" has ${w.length} letters.` }
      : { q: pick(r, [`${w} 有几个字母？`, `数一数 ${w} 有多少个字母。`]), a: `${w} 有 ${w.length} 个字母。` };
  }
  const c = pick(r, [...w]);
  const k = [...w].filter((x) => x === c).length;
  return lang === 'en'
    ? { q: `How many times does the letter "${c}" appear in "${w}"?`, a: `The letter "${c}" appears ${k} ${k === 1 ? 'time' : 'times'} in "${w}".` }
    : { q: `字母 ${c} 在 ${w} 中出现了几次？`, a: `字母 ${c} 在 ${w} 中出现了 ${k} 次。` };
}

function fact(r: Rand, lang: Lang): QA {
  const [c, cz, cap, capz, cont] = pick(r, COUNTRIES);
  const [ct, ctz] = CONTINENTS[cont];
  const kind = int(r, 0, 2);
  const C = c[0].toUpperCase() + c.slice(1);
  if (lang === 'en') {
    if (kind === 0) return { q: pick(r, [`What is the capital of ${c}?`, `Name the capital city of ${c}.`]), a: `The capital of ${c} is ${cap}.` };
    if (kind === 1) return { q: `${cap} is the capital of which country?`, a: `${cap} is the capital of ${c}.` };
    return { q: `Which continent is ${c} in?`, a: `${C} is in ${ct}.` };
  }
  if (kind === 0) return { q: pick(r, [`${cz}的首都是哪里？`, `${cz}的首都是什么城市？`]), a: `${cz}的首都是${capz}。` };
  if (kind === 1) return { q: `${capz}是哪个国家的首都？`, a: `${capz}是${cz}的首都。` };
  return { q: `${cz}位于哪个洲？`, a: `${cz}位于${ctz}。` };
}

/** The task families, by name (the built-in run's quiz counts right answers per family). */
export const FAMILIES: Record<string, (r: Rand, lang: Lang) => QA> = { arithmetic, conversion, string: stringTask, fact };
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
