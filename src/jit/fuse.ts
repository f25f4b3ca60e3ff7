/**
 * Elementwise fusion: a chain (a tree, in general) of elementwise primitives and the broadcasts
 * feeding them becomes one generated loop over the output, so intermediates are never stored
 * (tinygrad's lazy elementwise fusion, XLA's loop fusion). A producer joins its consumer's group
 * when its only use is there, it is not an output, and it has the group's shape (a broadcastTo
 * joins as a strided read). Shapes are static in a compiled graph, so each loop is generated with
 * its sizes and strides as literals; the inner loop reads broadcast operands once per row.
 */
import type { FusedExpr, FusedKernel, FusedNode, TypedArray } from '../backends/backend.ts';
import { elementwiseExprs, lib } from '../backends/cpu/elementwise.ts';
import { broadcastStrides, collapseAxes, shapesEqual } from '../tensor/shape.ts';
import type { Eqn, Graph } from './graph.ts';

export type FusedLoop = (out: TypedArray, ins: readonly TypedArray[]) => void;


/** A unit of execution: one primitive, one fused loop, or a reshape (a view of its input). */
export type Step =
  | { readonly kind: 'prim'; readonly eqn: Eqn; readonly ins: readonly number[]; readonly out: number }
  | {
      readonly kind: 'fused'; readonly ops: readonly string[]; readonly loop: FusedLoop; readonly expr: FusedExpr; readonly ins: readonly number[]; readonly out: number;
      /** Set by a backend's code generator (the CPU backend's wasm SIMD loops); the JS `loop` is the fallback. */
      fast?: FusedKernel;
    }
  | { readonly kind: 'alias'; readonly ins: readonly number[]; readonly out: number };

export const isElementwise = (prim: string): boolean => prim in elementwiseExprs;

/** How many times each variable is read (outputs count as a read that cannot fuse). */
function useCounts(g: Graph): number[] {
  const uses = new Array<number>(g.vars.length).fill(0);
  for (const e of g.eqns) for (const v of e.ins) uses[v]++;
  for (const o of g.outputs) if ('v' in o) uses[o.v] += 2;
  return uses;
}

/** The steps of a graph, with elementwise groups fused when `fuse` is set (CPU typed-array backends). */
export function schedule(g: Graph, fuse: boolean): Step[] {
  const uses = useCounts(g);
  const producer = (v: number) => (g.vars[v].src.kind === 'eqn' ? (g.vars[v].src as { eqn: number }).eqn : -1);
  const absorbed = new Array<boolean>(g.eqns.length).fill(false);
  const groups = new Map<number, number[]>();
  for (let i = g.eqns.length - 1; fuse && i >= 0; i--) {
    const root = g.eqns[i];
    if (absorbed[i] || !isElementwise(root.prim)) continue;
    const shape = g.vars[root.out].shape;
    const members = [i];
    for (let k = 0; k < members.length; k++) {
      const m = g.eqns[members[k]];
      if (m.prim === 'broadcastTo') continue;
      for (const v of m.ins) {
        const p = producer(v);
        if (p < 0 || absorbed[p] || uses[v] !== 1) continue;
        const pe = g.eqns[p];
        const fits = pe.prim === 'broadcastTo' || (isElementwise(pe.prim) && shapesEqual(g.vars[pe.out].shape, shape));
        if (!fits || pe.dynAttrs.length) continue;
        absorbed[p] = true;
        members.push(p);
      }
    }
    if (members.length > 1) groups.set(i, members.sort((a, b) => a - b));
  }
  const steps: Step[] = [];
  g.eqns.forEach((e, i) => {
    if (absorbed[i]) return;
    const members = groups.get(i);
    if (members) steps.push(fusedStep(g, members));
    else if (e.prim === 'reshape') steps.push({ kind: 'alias', ins: e.ins, out: e.out });
    else steps.push({ kind: 'prim', eqn: e, ins: e.ins, out: e.out });
  });
  return steps;
}

/** The scalar expression of one elementwise equation over operand names. */
function exprOf(e: Eqn, operands: readonly string[], name: string): string[] {
  const sub = (src: string) => src.replace(/\b[abc]\b/g, (v) => operands['abc'.indexOf(v)]);
  if (e.prim === 'affine' && (e.attrs as { act?: string }).act === 'silu') {
    return [`const ${name}z = ${sub('a * b + c')};`, `const ${name} = ${name}z * sigmoid(${name}z);`];
  }
  return [`const ${name} = ${sub(elementwiseExprs[e.prim][1])};`];
}

function fusedStep(g: Graph, members: readonly number[]): Step {
  const root = g.eqns[members[members.length - 1]];
  const shape = g.vars[root.out].shape;
  const inGroup = new Map(members.map((m) => [g.eqns[m].out, `t${m}`]));
  const leaves: number[] = [];
  const leafName = (v: number) => {
    let k = leaves.indexOf(v);
    if (k < 0) k = leaves.push(v) - 1;
    return `v${k}`;
  };
  const body: string[] = [];
  const nodes: FusedNode[] = [];
  const nodeOf = new Map(members.map((m, i) => [g.eqns[m].out, i]));
  for (const m of members) {
    const e = g.eqns[m];
    const operands = e.ins.map((v) => inGroup.get(v) ?? leafName(v));
    nodes.push({ prim: e.prim, act: (e.attrs as { act?: string } | undefined)?.act, args: e.ins.map((v) => (nodeOf.has(v) ? { node: nodeOf.get(v)! } : { leaf: leaves.indexOf(v) })) });
    if (e.prim === 'broadcastTo') body.push(`const t${m} = ${operands[0]};`);
    else body.push(...exprOf(e, operands, `t${m}`));
  }
  const strides = leaves.map((v) => broadcastStrides(g.vars[v].shape, shape));
  const c = collapseAxes(shape, strides);
  const ops = members.map((m) => g.eqns[m].prim);
  const expr: FusedExpr = { nodes, shape: c.shape, strides: c.strides, dtype: g.vars[root.out].dtype };
  return { kind: 'fused', ops, loop: compileLoop(ops.join('_'), c.shape, c.strides, body, `t${members[members.length - 1]}`), expr, ins: leaves, out: root.out };
}

const loopCache = new Map<string, FusedLoop>();

/** Nested loops over the collapsed output shape; leaves with inner stride 0 are read once per row. */
function compileLoop(name: string, shape: readonly number[], strides: readonly number[][], body: readonly string[], result: string): FusedLoop {
  const dims = shape.length ? shape : [1];
  const st = shape.length ? strides : strides.map(() => [0]);
  const r = dims.length;
  const inner = st.map((s) => s[r - 1]);
  const lines = [`let o = 0;`];
  for (let d = 0; d < r - 1; d++) lines.push(`for (let i${d} = 0; i${d} < ${dims[d]}; i${d}++) {`);
  st.forEach((s, k) => {
    const terms = s.slice(0, r - 1).map((x, d) => (x ? `i${d} * ${x}` : '')).filter(Boolean);
    lines.push(`const b${k} = ${terms.join(' + ') || '0'};`);
    if (inner[k] === 0) lines.push(`const v${k} = I${k}[b${k}];`);
  });
  lines.push(`for (let j = 0; j < ${dims[r - 1]}; j++) {`);
  st.forEach((_, k) => {
    if (inner[k] !== 0) lines.push(`const v${k} = I${k}[b${k} + ${inner[k] === 1 ? 'j' : `j * ${inner[k]}`}];`);
  });
  lines.push(...body, `out[o++] = ${result};`, '}');
  for (let d = 0; d < r - 1; d++) lines.push('}');
  const fn = `fused_${name.slice(0, 80)}`;
  const src = `return function ${fn}(out, ins) {\n${st.map((_, k) => `const I${k} = ins[${k}];`).join(' ')}\n${lines.join('\n')}\n};`;
  let loop = loopCache.get(src);
  if (!loop) {
    const helpers = Object.keys(lib).map((k) => `const ${k} = lib.${k};`).join('\n');
    loop = new Function('lib', `${helpers}\n${src}`)(lib) as FusedLoop;
    loopCache.set(src, loop);
  }
  return loop;
}
