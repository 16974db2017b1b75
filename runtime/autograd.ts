// Reverse-mode autograd over the recorded graph. Nodes are visited in reverse topological order
// (an explicit sort, not recursion); each op's backward rule lives in its kernel module and is
// registered here in one table (kernels/index.ts). Gradients of leaves accumulate with +.
import { Tensor, TapeNode, noGrad, copyInto, gradSlot } from './tensor.js';

/** Gradients for node.inputs: a tensor, null (no gradient), or undefined when the rule already
 *  accumulated into input.grad itself (e.g. matmul writing dW with beta = 1). */
export type BackwardRule = (node: TapeNode, gradOutputs: (Tensor | null)[]) => (Tensor | null | undefined)[];

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

/** Backpropagate from `root` (a scalar unless `gradRoot` is given) into every leaf's .grad. */
export function backward(root: Tensor, gradRoot?: Tensor): void {
  if (!addInto || !addTensors) throw new Error('backward: no kernels registered (import kernels/index.js)');
  if (!gradRoot && root.size !== 1) throw new Error(`backward: root has shape [${root.shape}]; pass its gradient`);
  const order = topoOrder(root);
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
      if (gOut.every((g) => g === null)) continue;
      const gIn = rule(node, gOut);
      node.inputs.forEach((x, i) => {
        const g = gIn[i];
        if (!g || !x.requiresGrad) return;
        if (g.size !== x.size) throw new Error(`backward: '${node.op}' gave grad [${g.shape}] for input [${x.shape}]`);
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
      // Drop the graph as we go: saved activations are released by the enclosing scope.
      for (const o of node.outputs) o.node = null;
      node.saved = {};
    }
    // Gradients that were produced but never consumed (unreachable leaves) are released here.
    for (const g of grads.values()) drop(g);
  });
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  leaf.hasGrad = true;
  if (leaf.grad) addInto!(leaf.grad, g);
  else copyInto(gradSlotEmpty(leaf), g);
}

function gradSlotEmpty(leaf: Tensor): Tensor {
  const g = Tensor.empty(leaf.shape);
  g.keep();
  leaf.grad = g;
  return g;
}

export { gradSlot };
