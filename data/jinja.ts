// Chat templates compiled to JavaScript closures over plain values. @huggingface/jinja interprets its AST
// allocating a wrapper object per value, ≈300 µs per MiniMind2 render: rendering, not tokenizing, bounded
// the validation pass at ~1.4k lines/s. This compiles the same AST (parsed by that library, same
// whitespace handling) for the subset chat templates use, with Python jinja2's semantics where the
// library departs from them (strip/lstrip/rstrip honour their argument, `set` in a loop body is
// per-iteration, True/None print as Python does). Anything outside the subset is reported at compile time
// or throws Unsupported while rendering, and the caller renders with the library instead.
// test/data_jinja.test.ts pins renders made by Python's jinja2 (fixtures/data/jinja_reference.json).
import { parse, tokenize } from '@huggingface/jinja';
import {
  binary, FILTERS, Fn, GLOBALS, isObj, member, no, NS, slice, str, STRING_METHODS, TESTS, truthy, Unsupported,
  type Ev, type Node, type Scope, type St, type V,
} from './jinja_values.js';

export { Unsupported };

function lookup(s: Scope | null, name: string): V {
  for (; s; s = s.parent) if (s.vars.has(name)) return s.vars.get(name);
  return GLOBALS.get(name);
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
