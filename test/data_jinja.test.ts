// The compiled chat templates (data/jinja.ts) against renders made by Python's jinja2 set up as transformers
// does (jinja_reference.json, from make_jinja_reference.py): MiniMind2's, minimind-3's and the project's
// ChatML template on seeded random conversations (tools, tool_calls, tool results, reasoning, empty and
// missing content), and a small template per construct.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Template } from '@huggingface/jinja';
import { CHATML_TEMPLATE } from '../data/chatml.js';
import { compileTemplate } from '../data/jinja.js';

const s = suite('data_jinja');
const SHARED = resolve(import.meta.dirname, '../../shared/minimind');
type Render = (v: Record<string, unknown>) => string;
const ref = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/data/jinja_reference.json'), 'utf8')) as {
  chatml_template: string;
  templates: Record<string, { vars: Record<string, unknown>; out: string }[]>;
  constructs: { name: string; src: string; vars: Record<string, unknown>; out: string }[];
};
const SOURCES: Record<string, string | undefined> = { chatml: CHATML_TEMPLATE };
for (const [name, dir] of [['minimind2', join(SHARED, 'minimind2_tokenizer')], ['minimind3', SHARED]]) {
  const f = join(dir, 'tokenizer_config.json');
  SOURCES[name] = existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')).chat_template : undefined;
}

s('the ChatML template is the one the fixture was rendered with', () => {
  assert.is(CHATML_TEMPLATE, ref.chatml_template, 'CHATML_TEMPLATE changed: rerun make_jinja_reference.py');
});

for (const [name, cases] of Object.entries(ref.templates)) {
  const src = SOURCES[name];
  if (src === undefined) {
    console.warn(`data_jinja: ${name} template not found under ${SHARED}; skipped`);
    s.skip(`${name}: compiled template renders what Python's jinja2 renders`, () => {});
    continue;
  }
  s(`${name}: compiled template renders what Python's jinja2 renders, on ${cases.length} random conversations`, () => {
    const compiled = compileTemplate(src);
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
