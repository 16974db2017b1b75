// Reverse-mode autograd over the recorded graph. Nodes are visited in reverse topological order
// (an explicit sort, not recursion); each op's backward rule lives in its kernel module and is
// registered here in one table (kernels/index.ts). Autograd owns accumulation: gradients of leaves
// and of tensors used twice add with +, and a rule that can write a leaf's gradient in place (a
// matmul's dW with beta = 1) asks autograd where: into(i).
import { Tensor, TapeNode, noGrad, copyInto } from './tensor.js';

/** Where input i's gradient should be written: into a leaf's .grad, adding to what it holds when
 *  `accumulate` (an earlier gradient, or the zeros of a parameter store), overwriting it otherwise.
 *  A rule that writes there returns that same tensor; autograd then adds nothing. */
export interface GradTarget { tensor: Tensor; accumulate: boolean }

/** Gradients for node.inputs (null: none). `into(i)` is null when input i needs no gradient or is
 *  not a leaf (the rule returns a new tensor, as it may always do). */
export type BackwardRule = (node: TapeNode, gradOutputs: (Tensor | null)[], into: (i: number) => GradTarget | null) => (Tensor | null)[];

/** Told when leaves' gradients are complete, while backward still records the rest (a data-parallel
 *  all-reduce starts a bucket then: runtime/grad_allreduce.ts). */
export interface BackwardHooks {
  /** Before the first rule: every leaf of the graph that needs a gradient. */
  begin(leaves: Tensor[]): void;
  /** After the last rule that adds to `leaf`'s gradient has been recorded. */
  final(leaf: Tensor): void;
}

/** `into` for calling a rule directly (bench, tests): every gradient comes back as a new tensor. */
export const noTargets = (): GradTarget | null => null;

const rules = new Map<string, BackwardRule>();
let addInto: ((dst: Tensor, src: Tensor) => void) | undefined;
let addTensors: ((a: Tensor, b: Tensor) => Tensor) | undefined;

export function registerBackward(table: Record<string, BackwardRule>,
  adders: { addInto: (dst: Tensor, src: Tensor) => void; add: (a: Tensor, b: Tensor) => Tensor }): void {
  for (const [op, rule] of Object.entries(table)) rules.set(op, rule);
  addInto = adders.addInto;
  addTensors = adders.add;
}

rules.set('reshape', (node, [g]) => [g ? g.reshape(node.inputs[0].shape) : null]);

function topoOrder(root: Tensor): TapeNode[] {
  const order: TapeNode[] = [];
  const seen = new Set<TapeNode>();
  const stack: [TapeNode, number][] = root.node ? [[root.node, 0]] : [];
  if (root.node) seen.add(root.node);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [node, i] = top;
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i].node;
      if (child && !seen.has(child)) { seen.add(child); stack.push([child, 0]); }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order; // inputs before the nodes that use them
}

/** Node index after which each leaf that needs a gradient gets no more (its first use in `order`). */
function lastUses(order: TapeNode[]): Map<number, Tensor[]> {
  const seen = new Set<Tensor>(), at = new Map<number, Tensor[]>();
  order.forEach((node, n) => {
    for (const x of node.inputs) {
      if (x.node || !x.requiresGrad || seen.has(x)) continue;
      seen.add(x);
      let list = at.get(n);
      if (!list) at.set(n, (list = []));
      list.push(x);
    }
  });
  return at;
}

/** Backpropagate from `root` (a scalar unless `gradRoot` is given) into every leaf's .grad. */
export function backward(root: Tensor, gradRoot?: Tensor, hooks?: BackwardHooks): void {
  if (!addInto || !addTensors) throw new Error('backward: no kernels registered (import kernels/index.js)');
  if (!gradRoot && root.size !== 1) throw new Error(`backward: root has shape [${root.shape}]; pass its gradient`);
  const order = topoOrder(root);
  const finals = hooks ? lastUses(order) : new Map<number, Tensor[]>();
  hooks?.begin([...finals.values()].flat());
  const done = (n: number) => { for (const x of finals.get(n) ?? []) hooks!.final(x); };
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>(); // non-leaf tensor -> gradient
    const refs = new Map<Tensor, number>(); // gradient buffer owner -> entries in `grads` using it
    const hold = (g: Tensor) => refs.set(g.base, (refs.get(g.base) ?? 0) + 1);
    const drop = (g: Tensor) => {
      const n = (refs.get(g.base) ?? 0) - 1;
      refs.set(g.base, n);
      if (n <= 0) g.base.dispose();
    };
    const seed = gradRoot ?? Tensor.fromArray([1], root.shape);
    grads.set(root, seed);
    hold(seed);
    if (gradRoot) hold(gradRoot); // the caller's tensor: never released here
    for (let n = order.length - 1; n >= 0; n--) {
      const node = order[n];
      const rule = rules.get(node.op);
      if (!rule) throw new Error(`backward: no rule for op '${node.op}'`);
      const gOut = node.outputs.map((o) => grads.get(o) ?? null);
      if (gOut.every((g) => g === null)) { finish(node); done(n); continue; }
      const gIn = rule(node, gOut, (i) => target(node.inputs[i]));
      node.inputs.forEach((x, i) => {
        const g = gIn[i];
        if (!g || !x.requiresGrad) return;
        if (g.size !== x.size) throw new Error(`backward: '${node.op}' gave grad [${g.shape}] for input [${x.shape}]`);
        // A gradient has its tensor's dtype (torch: the gradient of a bfloat16 tensor is bfloat16).
        if (g.dtype !== x.dtype) throw new Error(`backward: '${node.op}' gave a ${g.dtype} grad for a ${x.dtype} input`);
        if (!x.node) accumulateLeaf(x, g);
        else {
          const prev = grads.get(x);
          if (prev) { grads.set(x, addTensors!(prev, g)); hold(grads.get(x)!); drop(prev); } else { grads.set(x, g); hold(g); }
        }
      });
      for (const o of node.outputs) {
        const g = grads.get(o);
        if (g) { grads.delete(o); drop(g); }
      }
      finish(node);
      done(n);
    }
    // Gradients that were produced but never consumed (unreachable leaves) are released here.
    for (const g of grads.values()) drop(g);
  });
}

/** Drops a visited node from the graph; what it alone still read is freed if dropUnread gave it up (else
 *  the enclosing scope frees it). */
function finish(node: TapeNode): void {
  for (const o of node.outputs) o.node = null;
  node.saved = {};
  for (const t of node.reads) t.readDone();
  node.reads = [];
}

/** A leaf's gradient slot for a rule to write into (created, uninitialised, when absent). */
function target(x: Tensor): GradTarget | null {
  if (!x.requiresGrad || x.node) return null;
  if (x.grad) return { tensor: x.grad, accumulate: true };
  return { tensor: (x.grad = Tensor.empty(x.shape, x.dtype).keep()), accumulate: false };
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  leaf.hasGrad = true;
  if (g === leaf.grad) return; // the rule wrote it in place (into)
  if (leaf.grad) addInto!(leaf.grad, g);
  else copyInto((leaf.grad = Tensor.empty(leaf.shape, g.dtype).keep()), g);
}
