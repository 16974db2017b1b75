// A restricted pickle machine, and the few opcodes needed to write one. It knows only the opcodes torch.save
// emits for a state_dict (protocol 2, plus the protocol-4 framing opcodes) and resolves a GLOBAL only from
// the caller's allowlist, as torch.load(weights_only=True) does: any other global (`os.system`,
// `builtins.eval`, ...) is refused with its name the moment the GLOBAL is read. Nothing in a pickle can run
// code here: REDUCE only calls the TS functions the allowlist maps names to.
// Values: None → null, bool → boolean, int → number, float → PyFloat, str → string, list → array,
// tuple → frozen array (Object.isFrozen tells them apart), dict → Map.

/** A resolved GLOBAL; `call` (absent for names only passed around, like storage classes) runs on REDUCE. */
export class PyGlobal {
  constructor(readonly name: string, readonly call?: (args: unknown[]) => unknown) {}
}

/** A Python float (a JS number alone would not say whether `2000` was `2000` or `2000.0`). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** A Python tuple: the array, frozen. */
export const tuple = <T>(items: T[]): readonly T[] => Object.freeze(items);

export interface UnpickleOptions {
  /** Prefixes every error, e.g. `ckpt.pth: archive/data.pkl`. */
  where: string;
  /** 'module.name' → the function REDUCE calls, or null for a global that may only be referenced. */
  globals: Map<string, ((args: unknown[]) => unknown) | null>;
  /** BINPERSID: the value for a persistent id (torch: a storage). */
  persistentLoad: (pid: unknown) => unknown;
  /** BUILD: set `state` on `obj`, or throw. */
  build: (obj: unknown, state: unknown) => void;
}

export function unpickle(bytes: Uint8Array, o: UnpickleOptions): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0, at = 0; // read position; offset of the current opcode
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();
  function fail(msg: string): never {
    throw new Error(`${o.where}: pickle byte ${at}: ${msg}`);
  }
  const take = (n: number) => {
    if (pos + n > bytes.length) fail('truncated pickle');
    pos += n;
    return pos - n;
  };
  const u8 = () => bytes[take(1)];
  const u32 = () => dv.getUint32(take(4), true);
  const str = (n: number, enc = 'utf-8') => new TextDecoder(enc).decode(bytes.subarray(take(n), pos));
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    return end < 0 ? fail('truncated GLOBAL') : str(end + 1 - pos).slice(0, -1);
  };
  const pop = () => (stack.length ? stack.pop() : fail('stack underflow'));
  const top = () => (stack.length ? stack[stack.length - 1] : fail('stack underflow'));
  const popMark = () => {
    const items = stack;
    stack = marks.pop() ?? fail('no MARK to pop to');
    return items;
  };
  const dict = (v: unknown) => (v instanceof Map ? v : fail('SETITEM(S) on something not a dict'));
  const list = (v: unknown) => (Array.isArray(v) && !Object.isFrozen(v) ? v : fail('APPEND(S) on something not a list'));
  const global = (name: string) => {
    const fn = o.globals.get(name);
    if (fn === undefined) {
      const alias = name.replace(/^(posix|nt)\./, 'os.'); // os.system pickles as posix.system
      fail(`refusing global '${name}'${alias !== name ? ` (${alias})` : ''}: a state_dict needs only ${[...o.globals.keys()].join(', ')} (nothing was executed)`);
    }
    return new PyGlobal(name, fn ?? undefined);
  };
  const get = (i: number) => (memo.has(i) ? memo.get(i) : fail(`memo ${i} was never stored`));

  for (;;) {
    at = pos;
    const op = u8();
    switch (op) {
      case 0x80: { const v = u8(); if (v > 5) fail(`pickle protocol ${v} unknown`); break; } // PROTO
      case 0x95: take(8); break; // FRAME: a length hint only
      case 0x2e: return pop(); // STOP
      case 0x28: marks.push(stack); stack = []; break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
      case 0x74: { const items = popMark(); stack.push(tuple(items)); break; } // TUPLE (popMark swaps `stack`)
      case 0x85: case 0x86: case 0x87: { // TUPLE1..3
        const n = op - 0x84;
        if (stack.length < n) fail('stack underflow');
        stack.push(tuple(stack.splice(stack.length - n, n)));
        break;
      }
      case 0x58: stack.push(str(u32())); break; // BINUNICODE
      case 0x8c: stack.push(str(u8())); break; // SHORT_BINUNICODE
      case 0x55: stack.push(str(u8(), 'latin1')); break; // SHORT_BINSTRING
      case 0x63: { const mod = line(); stack.push(global(`${mod}.${line()}`)); break; } // GLOBAL
      case 0x93: { const name = pop(), mod = pop(); stack.push(global(`${mod}.${name}`)); break; } // STACK_GLOBAL
      case 0x51: stack.push(o.persistentLoad(pop())); break; // BINPERSID
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        if (!(fn instanceof PyGlobal) || !fn.call) fail(`REDUCE of ${fn instanceof PyGlobal ? `'${fn.name}', which is not callable here` : 'a non-global'}`);
        if (!Array.isArray(args)) fail('REDUCE arguments are not a tuple');
        stack.push(fn.call(args));
        break;
      }
      case 0x62: { const state = pop(); o.build(top(), state); break; } // BUILD
      case 0x73: { const v = pop(), k = pop(); dict(top()).set(k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark(), d = dict(top());
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        break;
      }
      case 0x61: { const v = pop(); list(top()).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); list(top()).push(...items); break; } // APPENDS
      case 0x4a: stack.push(dv.getInt32(take(4), true)); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(dv.getUint16(take(2), true)); break; // BININT2
      case 0x8a: { // LONG1: n bytes, little-endian two's complement
        const n = u8(), b = bytes.subarray(take(n), pos);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) fail(`integer ${v} too large`);
        stack.push(Number(v));
        break;
      }
      case 0x47: stack.push(new PyFloat(dv.getFloat64(take(8), false))); break; // BINFLOAT (big-endian)
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4e: stack.push(null); break; // NONE
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: stack.push(get(u8())); break; // BINGET
      case 0x6a: stack.push(get(u32())); break; // LONG_BINGET
      default:
        fail(`opcode 0x${op.toString(16)} ('${String.fromCharCode(op)}') is not one a state_dict needs`);
    }
  }
}

/** Emits protocol-2 pickle opcodes; globals are written once and fetched from the memo afterwards. */
export class PickleWriter {
  private out: number[] = [0x80, 2]; // PROTO 2
  private memo = new Map<string, number>();

  mark(): this { return this.op(0x28); }
  tuple(): this { return this.op(0x74); } // TUPLE: everything since the last mark
  emptyTuple(): this { return this.op(0x29); }
  reduce(): this { return this.op(0x52); }
  persid(): this { return this.op(0x51); } // BINPERSID
  setitems(): this { return this.op(0x75); }
  emptyDict(): this { return this.op(0x7d); }
  emptyList(): this { return this.op(0x5d); }
  appends(): this { return this.op(0x65); } // APPENDS: everything since the last mark
  none(): this { return this.op(0x4e); }
  bool(v: boolean): this { return this.op(v ? 0x88 : 0x89); }

  float(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    return this.op(0x47, ...b); // BINFLOAT, big-endian
  }

  global(module: string, name: string): this {
    const key = `${module}\n${name}\n`, slot = this.memo.get(key);
    if (slot !== undefined) return slot < 256 ? this.op(0x68, slot) : this.op(0x6a, ...le32(slot));
    const id = this.memo.size;
    this.memo.set(key, id);
    this.op(0x63, ...new TextEncoder().encode(key));
    return id < 256 ? this.op(0x71, id) : this.op(0x72, ...le32(id)); // BINPUT / LONG_BINPUT
  }

  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.op(0x58, ...le32(b.length), ...b); // BINUNICODE
  }

  int(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`pickle: integer ${v} not a safe non-negative integer`);
    if (v < 0x100) return this.op(0x4b, v); // BININT1
    if (v < 0x10000) return this.op(0x4d, v & 0xff, v >> 8); // BININT2
    if (v < 0x80000000) return this.op(0x4a, ...le32(v)); // BININT
    const b: number[] = [];
    for (let x = BigInt(v); x > 0n; x >>= 8n) b.push(Number(x & 0xffn));
    if (b[b.length - 1] & 0x80) b.push(0); // keep it positive
    return this.op(0x8a, b.length, ...b); // LONG1
  }

  /** A tuple of small ints (shapes, strides). */
  ints(vs: number[]): this {
    this.mark();
    for (const v of vs) this.int(v);
    return this.tuple();
  }

  stop(): Uint8Array {
    this.op(0x2e);
    return Uint8Array.from(this.out);
  }

  private op(...b: number[]): this {
    for (const x of b) this.out.push(x);
    return this;
  }
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}
