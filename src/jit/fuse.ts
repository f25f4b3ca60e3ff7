/**
 * Elementwise fusion: a chain (a tree, in general) of elementwise primitives and the broadcasts feeding them
 * becomes one kernel over the output, so intermediates are never stored (tinygrad's lazy elementwise fusion, XLA's
 * loop fusion). A producer joins its consumer's group when its only use is there, it is not an output, and it has
 * the group's shape (a broadcastTo joins as a strided read). A `sum` whose input is an elementwise value read only
 * there roots a group too: the elementwise work is evaluated inside the reduction loop and only the sums are stored
 * (XLA's reduction fusion). Each group is described as a `FusedGroup` and compiled by the backend (fused-group.ts);
 * a group the backend declines stays its equations, one step each.
 */
import type { FusedGroup, FusedKernel } from '../backends/backend.ts';
import { elementwiseExprs } from '../backends/cpu/elementwise.ts';
import { shapesEqual } from '../tensor/shape.ts';
import { describeGroup } from './fused-group.ts';
import type { Eqn, Graph } from './graph.ts';

/** A unit of execution: one primitive, one fused group, or a reshape (a view of its input). */
export type Step =
  | { readonly kind: 'prim'; readonly eqn: Eqn; readonly ins: readonly number[]; readonly out: number }
  | { readonly kind: 'fused'; readonly group: FusedGroup; readonly kernel: FusedKernel; readonly eqns: number; readonly ins: readonly number[]; readonly out: number }
  | { readonly kind: 'alias'; readonly ins: readonly number[]; readonly out: number };

/** The elementwise primitives (the CPU backend's expression table lists them all). */
export const isElementwise = (prim: string): boolean => prim in elementwiseExprs;

/** Compiles groups on the graph's backend: a kernel per group, null where the backend declines it. */
export type CompileGroups = (groups: readonly FusedGroup[]) => readonly (FusedKernel | null)[];

/** How many times each variable is read (outputs count as a read that cannot fuse). */
function useCounts(g: Graph): number[] {
  const uses = new Array<number>(g.vars.length).fill(0);
  for (const e of g.eqns) for (const v of e.ins) uses[v]++;
  for (const o of g.outputs) if ('v' in o) uses[o.v] += 2;
  return uses;
}

/** Whether a `sum` fuses with its input's producer: an elementwise equation whose value only the sum reads. */
function sumsFusable(g: Graph, sum: Eqn, uses: readonly number[], producer: (v: number) => number): boolean {
  const v = sum.ins[0];
  const p = producer(v);
  return p >= 0 && uses[v] === 1 && isElementwise(g.eqns[p].prim) && !g.eqns[p].dynAttrs.length;
}

/** The groups of a graph: root equation → its members (equation indices, ascending; the root is last). */
function findGroups(g: Graph): Map<number, number[]> {
  const uses = useCounts(g);
  const producer = (v: number) => (g.vars[v].src.kind === 'eqn' ? (g.vars[v].src as { eqn: number }).eqn : -1);
  const absorbed = new Array<boolean>(g.eqns.length).fill(false);
  const groups = new Map<number, number[]>();
  for (let i = g.eqns.length - 1; i >= 0; i--) {
    const root = g.eqns[i];
    if (absorbed[i]) continue;
    const reduces = root.prim === 'sum' && sumsFusable(g, root, uses, producer);
    if (!reduces && !isElementwise(root.prim)) continue;
    const shape = g.vars[reduces ? root.ins[0] : root.out].shape;
    const members = [i];
    if (reduces) {
      const p = producer(root.ins[0]);
      absorbed[p] = true;
      members.push(p);
    }
    for (let k = reduces ? 1 : 0; k < members.length; k++) {
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
  return groups;
}

/**
 * The steps of a graph: with `compile`, its groups fused into the kernels `compile` gives (a declined group's
 * equations stay steps of their own, in graph order; a declined reducing group still fuses its elementwise part,
 * the sum then a step of its own); without, one step per equation. `declined` counts the groups whose equations
 * all run one by one.
 */
export function schedule(g: Graph, compile: CompileGroups | null): { steps: Step[]; declined: number } {
  const fusedAt = new Map<number, Step>();
  const inGroup = new Set<number>();
  /** Fuses groups (root, members) where the backend compiles them; returns the declined ones. */
  const fuseGroups = (groups: readonly (readonly [number, number[]])[]) => {
    if (!compile || !groups.length) return groups;
    const described = groups.map(([, members]) => describeGroup(g, members));
    const kernels = compile(described.map((d) => d.group));
    return groups.filter(([root, members], i) => {
      const kernel = kernels[i];
      if (!kernel) return true;
      for (const m of members) inGroup.add(m);
      fusedAt.set(root, { kind: 'fused', group: described[i].group, kernel, eqns: members.length, ins: described[i].leaves, out: g.eqns[root].out });
      return false;
    });
  };
  const declined = fuseGroups(compile ? [...findGroups(g)] : []);
  const elementwiseParts = declined.filter(([r, m]) => g.eqns[r].prim === 'sum' && m.length > 2).map(([, m]) => [m[m.length - 2], m.slice(0, -1)] as const);
  const stillDeclined = fuseGroups(elementwiseParts).length + declined.length - elementwiseParts.length;
  const steps: Step[] = [];
  g.eqns.forEach((e, i) => {
    const fused = fusedAt.get(i);
    if (fused) steps.push(fused);
    else if (inGroup.has(i)) return;
    else if (e.prim === 'reshape') steps.push({ kind: 'alias', ins: e.ins, out: e.out });
    else steps.push({ kind: 'prim', eqn: e, ins: e.ins, out: e.out });
  });
  return { steps, declined: stillDeclined };
}
