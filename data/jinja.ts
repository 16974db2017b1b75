// Chat templates compiled to JavaScript closures over plain values. @huggingface/jinja interprets its AST
// allocating a wrapper object per value, ≈300 µs per MiniMind2 render: rendering, not tokenizing, bounded
// the validation pass at ~1.4k lines/s. This compiles the same AST (parsed by that library, same
// whitespace handling) for the subset chat templates use, with Python jinja2's semantics where the
// library departs from them (strip/lstrip/rstrip honour their argument, `set` in a loop body is
// per-iteration, True/None print as Python does). Anything outside the subset is reported at compile time
// or throws Unsupported while rendering, and the caller renders with the library instead.
// test/data_jinja.test.ts pins renders made by Python's jinja2 (fixtures/data/jinja_reference.json).
import { parse, tokenize } from '@huggingface/jinja';

export class Unsupported extends Error {}
const no = (what: string): never => { throw new Unsupported(what); };

type V = unknown;
interface Scope { vars: Map<string, V>; parent: Scope | null }
type Ev = (s: Scope) => V;
type St = (s: Scope, out: string[]) => number; // 0 go on, 1 break, 2 continue
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Node = any; // the library's AST classes, walked by their `type`

class NS { constructor(readonly attrs: Map<string, V>) {} }
class Fn { constructor(readonly call: (args: V[], kw: Map<string, V>) => V) {} }

const isObj = (v: V): v is Record<string, V> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof NS) && !(v instanceof Fn);
const truthy = (v: V): boolean => (Array.isArray(v) ? v.length > 0 : isObj(v) ? Object.keys(v).length > 0 : Boolean(v));
/** Python's str() for the scalars; containers are outside the subset. */
const str = (v: V): string =>
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
const STRING_METHODS: Record<string, (s: string, args: V[]) => V> = {
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

function member(obj: V, key: V): V {
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

function slice(obj: V, start: V, stop: V, step: V): V {
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

const FILTERS: Record<string, (v: V, args: V[], kw: Map<string, V>) => V> = {
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

const TESTS: Record<string, (v: V) => boolean> = {
  string: (v) => typeof v === 'string', number: (v) => typeof v === 'number', integer: (v) => Number.isInteger(v),
  boolean: (v) => typeof v === 'boolean', mapping: (v) => isObj(v), sequence: (v) => typeof v === 'string' || Array.isArray(v),
  iterable: (v) => typeof v === 'string' || Array.isArray(v) || isObj(v), defined: (v) => v !== undefined,
  undefined: (v) => v === undefined, none: (v) => v === null, true: (v) => v === true, false: (v) => v === false,
  callable: (v) => v instanceof Fn, even: (v) => (v as number) % 2 === 0, odd: (v) => (v as number) % 2 !== 0,
};

const GLOBALS = new Map<string, V>([
  ['true', true], ['false', false], ['none', null], ['True', true], ['False', false], ['None', null],
  ['namespace', new Fn((args, kw) => (args.length ? no('namespace(dict)') : new NS(new Map(kw))))],
  ['raise_exception', new Fn(([msg]) => { throw new Error(str(msg)); })],
]);

function lookup(s: Scope | null, name: string): V {
  for (; s; s = s.parent) if (s.vars.has(name)) return s.vars.get(name);
  return GLOBALS.get(name);
}

function binary(op: string, a: V, b: V): V {
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

const NO_KW = new Map<string, V>();

// Hot path: plain loops, no closures created per call (tsx wraps every runtime closure in a naming helper).
function args(nodes: Node[]): (s: Scope) => [V[], Map<string, V>] {
  const pos: Ev[] = [], kwNames: string[] = [], kwEvs: Ev[] = [];
  for (const a of nodes) {
    if (a.type === 'KeywordArgumentExpression') { kwNames.push(a.key.value); kwEvs.push(expr(a.value)); }
    else if (a.type.endsWith('SpreadExpression')) no('spread arguments');
    else pos.push(expr(a));
  }
  return (s) => {
    const out: V[] = new Array(pos.length);
    for (let i = 0; i < pos.length; i++) out[i] = pos[i](s);
    if (kwNames.length === 0) return [out, NO_KW];
    const kw = new Map<string, V>();
    for (let i = 0; i < kwNames.length; i++) kw.set(kwNames[i], kwEvs[i](s));
    return [out, kw];
  };
}

function expr(n: Node): Ev {
  switch (n.type) {
    case 'StringLiteral': case 'IntegerLiteral': { const v = n.value; return () => v; }
    case 'ArrayLiteral': case 'TupleLiteral': { const items = args(n.value); return (s) => items(s)[0]; }
    case 'Identifier': { const name = n.value; return (s) => lookup(s, name); }
    case 'MemberExpression': {
      const obj = expr(n.object), p = n.property;
      if (!n.computed) return (s) => member(obj(s), p.value);
      if (p.type === 'SliceExpression') {
        const [a, b, c] = [p.start, p.stop, p.step].map((x) => (x ? expr(x) : () => undefined));
        return (s) => slice(obj(s), a(s), b(s), c(s));
      }
      const key = expr(p);
      return (s) => member(obj(s), key(s));
    }
    case 'CallExpression': {
      const callee = expr(n.callee), a = args(n.args);
      if (n.callee.type === 'MemberExpression' && !n.callee.computed) {
        const obj = expr(n.callee.object), name = n.callee.property.value, direct = STRING_METHODS[name];
        return (s) => {
          const o = obj(s);
          if (direct && typeof o === 'string') return direct(o, a(s)[0]);
          const f = member(o, name);
          return f instanceof Fn ? f.call(...a(s)) : no('call of a non-function');
        };
      }
      return (s) => {
        const f = callee(s);
        if (!(f instanceof Fn)) return no('call of a non-function');
        return f.call(...a(s));
      };
    }
    case 'BinaryExpression': {
      const op = n.operator.value, l = expr(n.left), r = expr(n.right);
      if (op === 'and') return (s) => { const v = l(s); return truthy(v) ? r(s) : v; };
      if (op === 'or') return (s) => { const v = l(s); return truthy(v) ? v : r(s); };
      return (s) => binary(op, l(s), r(s));
    }
    case 'UnaryExpression': {
      const a = expr(n.argument);
      if (n.operator.value === 'not') return (s) => !truthy(a(s));
      if (n.operator.value === '-') return (s) => { const v = a(s); return typeof v === 'number' ? -v : no('unary minus'); };
      return no(`unary ${n.operator.value}`);
    }
    case 'TestExpression': {
      const t = TESTS[n.test.value] ?? no(`test ${n.test.value}`), a = expr(n.operand), neg = n.negate;
      return (s) => t(a(s)) !== neg;
    }
    case 'FilterExpression': {
      const f = n.filter, name = f.type === 'Identifier' ? f.value : f.callee.value;
      const fn = FILTERS[name] ?? no(`filter ${name}`), a = expr(n.operand), fa = f.type === 'Identifier' ? args([]) : args(f.args);
      return (s) => fn(a(s), ...fa(s));
    }
    case 'Ternary': {
      const c = expr(n.condition), t = expr(n.trueExpr), f = expr(n.falseExpr);
      return (s) => (truthy(c(s)) ? t(s) : f(s));
    }
    default: return no(`expression ${n.type}`);
  }
}

function block(nodes: Node[]): St {
  const sts = nodes.map(stmt);
  return (s, out) => {
    for (const st of sts) { const sig = st(s, out); if (sig) return sig; }
    return 0;
  };
}

function assign(target: Node): (s: Scope, v: V) => void {
  if (target.type === 'Identifier') return (s, v) => { s.vars.set(target.value, v); };
  if (target.type === 'TupleLiteral') {
    const names: string[] = target.value.map((x: Node) => (x.type === 'Identifier' ? x.value : no('nested unpacking')));
    return (s, v) => {
      if (!Array.isArray(v) || v.length !== names.length) no('unpacking mismatch');
      for (let i = 0; i < names.length; i++) s.vars.set(names[i], (v as V[])[i]);
    };
  }
  if (target.type === 'MemberExpression' && !target.computed) {
    const obj = expr(target.object), key = target.property.value;
    return (s, v) => { const o = obj(s); if (!(o instanceof NS)) no('set on a non-namespace'); (o as NS).attrs.set(key, v); };
  }
  return no(`assignment to ${target.type}`);
}

function stmt(n: Node): St {
  switch (n.type) {
    case 'Comment': return () => 0;
    case 'Break': return () => 1;
    case 'Continue': return () => 2;
    case 'If': {
      const t = expr(n.test), a = block(n.body), b = block(n.alternate);
      return (s, out) => (truthy(t(s)) ? a(s, out) : b(s, out));
    }
    case 'Set': {
      const set = assign(n.assignee);
      if (n.value) { const v = expr(n.value); return (s) => { set(s, v(s)); return 0; }; }
      const body = block(n.body);
      return (s) => { const o: string[] = []; body(s, o); set(s, o.join('')); return 0; };
    }
    case 'For': return forLoop(n);
    default: {
      const e = expr(n); // an output `{{ … }}` or raw text
      return (s, out) => { out.push(str(e(s))); return 0; };
    }
  }
}

// As jinja2: the `if` filter applied first; each iteration gets its own scope (a `set` in the body is not
// seen by the next iteration nor after the loop); `else` runs unless some iteration finished its body.
function forLoop(n: Node): St {
  const sel = n.iterable.type === 'SelectExpression';
  const iter = expr(sel ? n.iterable.lhs : n.iterable), test = sel ? expr(n.iterable.test) : undefined;
  const bind = assign(n.loopvar), body = block(n.body), otherwise = block(n.defaultBlock);
  return (outer, out) => {
    const scope: Scope = { vars: new Map(), parent: outer };
    const it = iter(scope);
    const all = Array.isArray(it) ? it : isObj(it) ? Object.keys(it) : typeof it === 'string' ? [...it] : no('iteration over a non-container');
    let items = all;
    if (test) {
      items = [];
      for (const x of all) {
        const ls: Scope = { vars: new Map(), parent: scope };
        bind(ls, x);
        if (truthy(test(ls))) items.push(x);
      }
    }
    let ran = false;
    for (let i = 0; i < items.length; i++) {
      const iteration: Scope = { vars: new Map(), parent: scope };
      iteration.vars.set('loop', {
        index: i + 1, index0: i, revindex: items.length - i, revindex0: items.length - i - 1, first: i === 0,
        last: i === items.length - 1, length: items.length, previtem: items[i - 1], nextitem: items[i + 1],
      });
      bind(iteration, items[i]);
      const sig = body(iteration, out);
      if (sig === 2) continue;
      if (sig === 1) break;
      ran = true;
    }
    if (!ran) otherwise(scope, out);
    return 0;
  };
}

/** Compile a template, or say why it is outside the compiled subset. */
export function compileTemplate(source: string): ((vars: Record<string, unknown>) => string) | string {
  try {
    const body = block(parse(tokenize(source, { lstrip_blocks: true, trim_blocks: true })).body);
    return (vars) => {
      const out: string[] = [];
      body({ vars: new Map(Object.entries(vars)), parent: null }, out);
      return out.join('');
    };
  } catch (e) {
    if (e instanceof Unsupported) return e.message;
    throw e;
  }
}
