// Values and builtins of the compiled chat templates (jinja.ts): plain JavaScript values read with
// Python jinja2's rules (truthiness, str(), ==, `in`, slices, str/dict methods, filters, tests).
export class Unsupported extends Error {}
export const no = (what: string): never => { throw new Unsupported(what); };

export type V = unknown;
export interface Scope { vars: Map<string, V>; parent: Scope | null }
export type Ev = (s: Scope) => V;
export type St = (s: Scope, out: string[]) => number; // 0 go on, 1 break, 2 continue
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Node = any; // the library's AST classes, walked by their `type`

export class NS { constructor(readonly attrs: Map<string, V>) {} }
export class Fn { constructor(readonly call: (args: V[], kw: Map<string, V>) => V) {} }

export const isObj = (v: V): v is Record<string, V> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof NS) && !(v instanceof Fn);
export const truthy = (v: V): boolean => (Array.isArray(v) ? v.length > 0 : isObj(v) ? Object.keys(v).length > 0 : Boolean(v));
/** Python's str() for the scalars; containers are outside the subset. */
export const str = (v: V): string =>
  typeof v === 'string' ? v : typeof v === 'number' ? String(v) : typeof v === 'boolean' ? (v ? 'True' : 'False')
    : v === null ? 'None' : v === undefined ? '' : no(`str() of ${typeof v}`);
const index = (n: number, len: number) => (n < 0 ? n + len : n);
// Python's str.isspace() set (str.strip() / split() without arguments).
const spaces = ' \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';
const SPACE_RUN = new RegExp(`[${spaces}]+`);
const stripper = (left: boolean, right: boolean) => (s: string, [chars]: V[]): string => {
  const set = chars === undefined || chars === null ? spaces : str(chars);
  let a = 0, b = s.length;
  while (left && a < b && set.includes(s[a])) a++;
  while (right && b > a && set.includes(s[b - 1])) b--;
  return s.slice(a, b);
};

// Called directly when the template calls them (`s.strip('\n')`); wrapped in an Fn only when passed around.
export const STRING_METHODS: Record<string, (s: string, args: V[]) => V> = {
  startswith: (s, [p]) => s.startsWith(str(p)),
  endswith: (s, [p]) => s.endsWith(str(p)),
  upper: (s) => s.toUpperCase(),
  lower: (s) => s.toLowerCase(),
  strip: stripper(true, true), lstrip: stripper(true, false), rstrip: stripper(false, true),
  replace: (s, [a, b, n]) => (n === undefined ? s.replaceAll(str(a), str(b)) : no('replace count')),
  split: (s, [sep, max]) => {
    if (sep === undefined || sep === null) return max === undefined ? s.split(SPACE_RUN).filter((x) => x) : no('split(None, n)');
    const parts = s.split(str(sep));
    if (max === undefined || (max as number) < 0) return parts;
    return [...parts.slice(0, max as number), parts.slice(max as number).join(str(sep))];
  },
};
const DICT_METHODS: Record<string, (o: Record<string, V>) => Fn> = {
  items: (o) => new Fn(() => Object.entries(o)),
  keys: (o) => new Fn(() => Object.keys(o)),
  values: (o) => new Fn(() => Object.values(o)),
  get: (o) => new Fn(([k, d]) => (Object.hasOwn(o, str(k)) ? o[str(k)] : d === undefined ? null : d)),
};

export function member(obj: V, key: V): V {
  if (typeof obj === 'string') {
    if (typeof key === 'number') return obj[index(key, obj.length)];
    const m = STRING_METHODS[key as string] ?? no(`str.${String(key)}`);
    return new Fn((args) => m(obj, args));
  }
  if (Array.isArray(obj)) return typeof key === 'number' ? obj[index(key, obj.length)] : no(`list.${String(key)}`);
  if (obj instanceof NS) return obj.attrs.get(str(key));
  if (isObj(obj)) {
    const k = str(key);
    return Object.hasOwn(obj, k) ? obj[k] : DICT_METHODS[k]?.(obj);
  }
  return no(`attribute of ${obj === null ? 'none' : typeof obj}`);
}

export function slice(obj: V, start: V, stop: V, step: V): V {
  if (typeof obj !== 'string' && !Array.isArray(obj)) return no('slice of a non-sequence');
  const n = obj.length, st = (step ?? 1) as number;
  if (st === 0) return no('slice step 0');
  const clamp = (v: V, def: number) => (v === undefined || v === null ? def : Math.max(st > 0 ? 0 : -1, Math.min(st > 0 ? n : n - 1, index(v as number, n))));
  const out: V[] = [];
  for (let i = clamp(start, st > 0 ? 0 : n - 1), end = clamp(stop, st > 0 ? n : -1); st > 0 ? i < end : i > end; i += st) out.push(obj[i]);
  return typeof obj === 'string' ? out.join('') : out;
}

/** Python json.dumps as the library's tojson writes it (ensure_ascii=False). */
function toJson(v: V, indent: number, depth = 0): string {
  if (v === undefined || v === null) return 'null';
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return JSON.stringify(v);
  const pad = indent ? '\n' + ' '.repeat(indent * depth) : '', child = indent ? pad + ' '.repeat(indent) : '';
  const sep = indent ? ',' : ', ';
  const core = Array.isArray(v) ? v.map((x) => toJson(x, indent, depth + 1))
    : isObj(v) ? Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${toJson(x, indent, depth + 1)}`) : no('tojson of this value');
  const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
  return indent && core.length ? `${open}${child}${core.join(sep + child)}${pad}${close}` : `${open}${core.join(sep)}${close}`;
}

export const FILTERS: Record<string, (v: V, args: V[], kw: Map<string, V>) => V> = {
  tojson: (v, _, kw) => ([...kw.keys()].some((k) => k !== 'indent') ? no('tojson options') : toJson(v, (kw.get('indent') ?? 0) as number)),
  length: (v) => (typeof v === 'string' || Array.isArray(v) ? v.length : isObj(v) ? Object.keys(v).length : no('length')),
  trim: (v) => STRING_METHODS.strip(str(v), []), upper: (v) => str(v).toUpperCase(), lower: (v) => str(v).toLowerCase(),
  string: (v) => str(v), safe: (v) => v, list: (v) => (Array.isArray(v) ? v : no('list')),
  first: (v) => (Array.isArray(v) ? v[0] : no('first')), last: (v) => (Array.isArray(v) ? v[v.length - 1] : no('last')),
  reverse: (v) => (Array.isArray(v) ? [...v].reverse() : no('reverse')),
  join: (v, [sep]) => (Array.isArray(v) ? v.map(str).join(sep === undefined ? '' : str(sep)) : no('join')),
  items: (v) => (isObj(v) ? Object.entries(v) : no('items')),
  default: (v, [d, bool]) => (bool !== undefined ? no('default(boolean)') : v === undefined ? d : v),
};
FILTERS.count = FILTERS.length;
FILTERS.d = FILTERS.default;

export const TESTS: Record<string, (v: V) => boolean> = {
  string: (v) => typeof v === 'string', number: (v) => typeof v === 'number', integer: (v) => Number.isInteger(v),
  boolean: (v) => typeof v === 'boolean', mapping: (v) => isObj(v), sequence: (v) => typeof v === 'string' || Array.isArray(v),
  iterable: (v) => typeof v === 'string' || Array.isArray(v) || isObj(v), defined: (v) => v !== undefined,
  undefined: (v) => v === undefined, none: (v) => v === null, true: (v) => v === true, false: (v) => v === false,
  callable: (v) => v instanceof Fn, even: (v) => (v as number) % 2 === 0, odd: (v) => (v as number) % 2 !== 0,
};

export const GLOBALS = new Map<string, V>([
  ['true', true], ['false', false], ['none', null], ['True', true], ['False', false], ['None', null],
  ['namespace', new Fn((args, kw) => (args.length ? no('namespace(dict)') : new NS(new Map(kw))))],
  ['raise_exception', new Fn(([msg]) => { throw new Error(str(msg)); })],
]);

export function binary(op: string, a: V, b: V): V {
  if (op === '==' || op === '!=') {
    if ((typeof a === 'object' && a !== null) || (typeof b === 'object' && b !== null)) return no('== on containers');
    // Python: no string/number coercion, None is not Undefined, True == 1.
    const num = (x: V) => typeof x === 'number' || typeof x === 'boolean';
    const eq = num(a) && num(b) ? Number(a) === Number(b) : a === b;
    return op === '==' ? eq : !eq;
  }
  if (op === 'in' || op === 'not in') {
    const hit = typeof b === 'string' ? b.includes(str(a)) : Array.isArray(b) ? b.includes(a) : isObj(b) ? Object.hasOwn(b, str(a)) : no('in');
    return op === 'in' ? hit : !hit;
  }
  if (op === '~') return str(a) + str(b);
  if (typeof a === 'number' && typeof b === 'number') {
    switch (op) {
      case '+': return a + b; case '-': return a - b; case '*': return a * b;
      case '<': return a < b; case '>': return a > b; case '<=': return a <= b; case '>=': return a >= b;
    }
  }
  if (op === '+' && typeof a === 'string' && typeof b === 'string') return a + b;
  if (op === '+' && Array.isArray(a) && Array.isArray(b)) return [...a, ...b];
  return no(`${typeof a} ${op} ${typeof b}`);
}

