// The compiled chat templates (data/jinja.ts) against renders made by Python's jinja2 set up as transformers
// does (jinja_reference.json, from make_jinja_reference.py): MiniMind2's, minimind-3's and the project's
// ChatML template on seeded random conversations (tools, tool_calls, tool results, reasoning, empty and
// missing content), and a small template per construct.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { CHATML_TEMPLATE } from '../data/chatml.js';
import { compileTemplate } from '../data/jinja.js';
import { SHARED, TOKENIZER_DIRS, missingShared, sharedTest } from './shared.js';

const s = suite('data_jinja');
type Render = (v: Record<string, unknown>) => string;
const ref = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/data/jinja_reference.json'), 'utf8')) as {
  chatml_template: string;
  templates: Record<string, { vars: Record<string, unknown>; out: string }[]>;
  constructs: { name: string; src: string; vars: Record<string, unknown>; out: string }[];
};
/** Where each template of the fixture comes from: the project's own, or a tokenizer_config.json under SHARED. */
const CONFIGS: Record<string, string> = Object.fromEntries(Object.entries(TOKENIZER_DIRS).map(([k, d]) => [k, `${d}/tokenizer_config.json`]));
const source = (name: string): string =>
  name === 'chatml' ? CHATML_TEMPLATE : JSON.parse(readFileSync(join(SHARED, CONFIGS[name]), 'utf8')).chat_template;

s('the ChatML template is the one the fixture was rendered with', () => {
  assert.is(CHATML_TEMPLATE, ref.chatml_template, 'CHATML_TEMPLATE changed: rerun make_jinja_reference.py');
});

for (const [name, cases] of Object.entries(ref.templates)) {
  const missing = name === 'chatml' ? undefined : missingShared([CONFIGS[name]]);
  sharedTest(s, missing, `${name}: compiled template renders what Python's jinja2 renders, on ${cases.length} random conversations`, () => {
    const compiled = compileTemplate(source(name));
    assert.type(compiled, 'function', String(compiled));
    for (const { vars, out } of cases) assert.is((compiled as Render)(vars), out, JSON.stringify(vars));
  });
}

for (const { name, src, vars, out } of ref.constructs) {
  s(`construct: ${name}`, () => {
    const compiled = compileTemplate(src);
    assert.type(compiled, 'function', String(compiled));
    assert.is((compiled as Render)(vars), out);
  });
}

s('the interpreter departs from jinja2 where the compiled renderer does not (why both exist)', () => {
  const c = ref.constructs.find((x) => x.name === 'string methods')!;
  assert.is.not(new Template(c.src).render(c.vars), c.out, 'the library ignores strip()/lstrip()/rstrip() arguments');
});

s('constructs outside the subset are reported at compile time; oddities at render time throw Unsupported', () => {
  assert.match(compileTemplate('{% macro m(x) %}{{ x }}{% endmacro %}{{ m(1) }}') as string, /Macro/);
  assert.match(compileTemplate('{{ 1.5 }}') as string, /FloatLiteral/);
  assert.match(compileTemplate('{{ x|unique }}') as string, /filter unique/);
  const f = compileTemplate('{{ xs }}') as Render;
  assert.throws(() => f({ xs: [1] }), /str\(\) of object/);
  const g = compileTemplate('{{ raise_exception("bad input") }}') as Render;
  assert.throws(() => g({}), /bad input/);
});

s.run();
