// The table-driven flag parser of every command (train/args.ts, model/chat.ts, model/serve.ts): argparse's
// `--name value` / `--name=value`, `store_true` switches (`--name=0|1|false|true` too), typed numbers, flags
// whose value may be left out (argparse's nargs='?' with const), and --help listing every flag.
export type FlagKind = 'string' | 'number' | 'switch';
export interface FlagSpec {
  kind: FlagKind; def: string | number | boolean; help: string;
  /** The value of the flag given without one (last on the line, or before another --flag). */
  bare?: string | number;
}
export type FlagTable = Record<string, FlagSpec>;

export interface Parsed<T extends FlagTable> {
  values: { [K in keyof T]: T[K]['kind'] extends 'number' ? number : T[K]['kind'] extends 'switch' ? boolean : string };
  /** Flags that were on the command line (not defaults). */
  given: Set<string>;
  help: boolean;
}

export function parseFlags<T extends FlagTable>(table: T, argv: string[]): Parsed<T> {
  const values: Record<string, unknown> = Object.fromEntries(Object.entries(table).map(([k, f]) => [k, f.def]));
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') return { values: values as Parsed<T>['values'], given, help: true };
    const m = a.match(/^--([A-Za-z_]+)(?:=(.*))?$/);
    if (!m || !(m[1] in table)) throw new Error(`unknown argument '${a}' (see --help)`);
    const [, name, inline] = m, f = table[name];
    given.add(name);
    if (f.kind === 'switch') {
      if (inline !== undefined && !['0', '1', 'false', 'true'].includes(inline)) throw new Error(`--${name} is a switch: no value, or 0/1/false/true`);
      values[name] = inline === undefined || inline === '1' || inline === 'true';
      continue;
    }
    if (f.bare !== undefined && inline === undefined && (i + 1 === argv.length || argv[i + 1].startsWith('--'))) {
      values[name] = f.bare;
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`--${name} needs a value`);
    if (f.kind === 'number') {
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${v}'`);
      values[name] = n;
    } else values[name] = v;
  }
  return { values: values as Parsed<T>['values'], given, help: false };
}

export function flagHelp(usage: string, table: FlagTable): string {
  const rows = Object.entries(table).map(([k, f]) =>
    `  --${k.padEnd(24)} ${f.help}${f.kind === 'switch' ? '' : ` (default: ${f.def === '' ? 'none' : f.def}${f.bare === undefined ? '' : `; given alone: ${f.bare}`})`}`);
  return `${usage}\n\nFlags:\n${rows.join('\n')}`;
}
