/**
 * Elementwise fusion: a chain (a tree, in general) of elementwise primitives and the broadcasts feeding them
 * becomes one kernel over the output, so intermediates are never stored (tinygrad's lazy elementwise fusion, XLA's
 * loop fusion). A producer joins its consumer's group when its only use is there, it is not an output, and it has
 * the group's shape (a broadcastTo joins as a strided read). A `sum` whose input is an elementwise value read only
 * there roots a group too: the elementwise work is evaluated inside the reduction loop and only the sums are stored
 * (XLA's reduction fusion). A sum of an elementwise value that has other readers joins the group computing that
 * value (or forms one with its lone producer), which then writes the value and its sums in one pass (XLA's
 * multi-output fusion). Each group is described as a `FusedGroup` and compiled by the backend (fused-group.ts); a
 * group the backend declines stays its equations, one step each.
 *
 * A `sum` over the planes (axes [2, 3]) of a depthwise conv's output — squeeze-excite's global average pool — runs
 * inside the conv's step where the backend's conv kernel writes such sums (`Kernel.writesSums`): the CPU depthwise
 * kernels add up each plane in registers as they store it, so the sum's extra pass over the activations goes.
 */
import type { FusedGroup, FusedKernel } from '../backends/backend.ts';
import { elementwiseExprs } from '../backends/cpu/elementwise.ts';
import { shapesEqual } from '../tensor/shape.ts';
import { describeGroup } from './fused-group.ts';
import type { Eqn, Graph } from './graph.ts';

/** A unit of execution: one primitive, one fused group, or a reshape (a view of its input). */
export type Step =
  | {
      readonly kind: 'prim';
      readonly eqn: Eqn;
      readonly ins: readonly number[];
      readonly out: number;
      /** The variable a `sum` over the output's planes goes to, for a conv whose kernel writes them too (`Kernel.writesSums`). */
      readonly sums?: number;
    }
  | {
      readonly kind: 'fused';
      readonly group: FusedGroup;
      readonly kernel: FusedKernel;
      readonly eqns: number;
      readonly ins: readonly number[];
      readonly out: number;
      /** The variable the sums go to, for a group that writes its values (`out`) and their sums. */
      readonly sums?: number;
    }
  | { readonly kind: 'alias'; readonly ins: readonly number[]; readonly out: number };

/** The elementwise primitives (the CPU backend's expression table lists them all). */
export const isElementwise = (prim: string): boolean => prim in elementwiseExprs;

/** Compiles groups on the graph's backend: a kernel per group, null where the backend declines it. */
export type CompileGroups = (groups: readonly FusedGroup[]) => readonly (FusedKernel | null)[];

/** How many times each variable is read (an output counts twice: a read that nothing may fuse or fold away). */
export function useCounts(g: Graph): number[] {
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

/**
 * Elements from which a lone elementwise equation (nothing to fuse it with) still runs as a group: the backend's
 * group kernel (wasm SIMD on the CPU, threads when large) instead of the primitive's generic kernel. Below, the
 * primitive's own loop is as fast as a kernel call.
 */
const LONE_MIN = 1 << 14;

/** Whether a lone elementwise equation runs as a one-node group (`LONE_MIN`); a broadcastTo alone stays a copy. */
const loneWorthAKernel = (g: Graph, i: number): boolean =>
  g.eqns[i].prim !== 'broadcastTo' && !g.eqns[i].dynAttrs.length && g.vars[g.eqns[i].out].size >= LONE_MIN;

/** A group of equations: its members (equation indices, ascending), the one whose value it computes, and a sum of that value fused in. */
interface Group {
  readonly root: number;
  readonly members: readonly number[];
  /** A sum of the root's value (read elsewhere too) the group also computes: a member, after the root. */
  readonly sum?: number;
}

/** The groups of a graph. */
function findGroups(g: Graph): Group[] {
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
    if (members.length > 1 || loneWorthAKernel(g, i)) groups.set(i, members.sort((a, b) => a - b));
  }
  // Sums of elementwise values that have other readers: each joins its value's group, or pairs with its producer.
  const sums = new Map<number, number>();
  g.eqns.forEach((e, i) => {
    if (e.prim !== 'sum' || groups.has(i)) return;
    const p = producer(e.ins[0]);
    if (p < 0 || absorbed[p] || sums.has(p) || !isElementwise(g.eqns[p].prim) || g.eqns[p].dynAttrs.length) return;
    sums.set(p, i);
  });
  const out: Group[] = [...groups].map(([root, members]) => {
    const sum = sums.get(root);
    return sum === undefined ? { root, members } : { root, members: [...members, sum], sum };
  });
  for (const [p, sum] of sums) if (!groups.has(p)) out.push({ root: p, members: [p, sum], sum });
  return out;
}

/** Whether the backend's kernel for a conv equation writes the sums over its output planes (`Kernel.writesSums`). */
export type WritesSums = (e: Eqn) => boolean;

/** Whether conv equation `e` is a depthwise conv2d / conv2dAffine (one input channel per group, any multiplier). */
function depthwise(g: Graph, e: Eqn): boolean {
  if ((e.prim !== 'conv2d' && e.prim !== 'conv2dAffine') || e.dynAttrs.length) return false;
  const [, C] = g.vars[e.ins[0]].shape, [, Cg] = g.vars[e.ins[1]].shape;
  const { groups } = e.attrs as { groups: number };
  return groups > 1 && groups === C && Cg === 1;
}

/** Per depthwise conv equation whose kernel writes plane sums, the first `sum` over axes [2, 3] of its output (equation indices). */
function convSums(g: Graph, writesSums: WritesSums | undefined): Map<number, number> {
  const pairs = new Map<number, number>();
  if (!writesSums) return pairs;
  g.eqns.forEach((e, i) => {
    if (e.prim !== 'sum' || g.vars[e.ins[0]].shape.length !== 4) return;
    const axes = (e.attrs as { axes: readonly number[] }).axes;
    const src = g.vars[e.ins[0]].src;
    if (axes.length !== 2 || axes[0] !== 2 || axes[1] !== 3 || src.kind !== 'eqn' || src.eqn < 0 || pairs.has(src.eqn)) return;
    const conv = g.eqns[src.eqn];
    if (depthwise(g, conv) && writesSums(conv)) pairs.set(src.eqn, i);
  });
  return pairs;
}

/**
 * The steps of a graph: with `compile`, its groups fused into the kernels `compile` gives (a declined group's
 * equations stay steps of their own, in graph order; a declined group with a sum still fuses its elementwise part,
 * the sum then a step of its own); without, one step per equation. With `writesSums`, a depthwise conv's step also
 * writes a `sum` over its output planes (`convSums` counts them; the sum has no step of its own). `declined`
 * counts the groups whose equations all run one by one.
 */
export function schedule(g: Graph, compile: CompileGroups | null, writesSums?: WritesSums): { steps: Step[]; declined: number; convSums: number } {
  const fusedAt = new Map<number, Step>();
  const inGroup = new Set<number>();
  /** Fuses the groups the backend compiles; returns the declined ones. */
  const fuseGroups = (groups: readonly Group[]) => {
    if (!compile || !groups.length) return groups;
    const described = groups.map((gr) => describeGroup(g, gr.members, gr.sum !== undefined));
    const kernels = compile(described.map((d) => d.group));
    return groups.filter(({ root, members, sum }, i) => {
      const kernel = kernels[i];
      if (!kernel) return true;
      for (const m of members) inGroup.add(m);
      const { group, leaves } = described[i];
      const out = g.eqns[root].out;
      fusedAt.set(root, { kind: 'fused', group, kernel, eqns: members.length, ins: leaves, out, ...(sum !== undefined && { sums: g.eqns[sum].out }) });
      return false;
    });
  };
  const declined = fuseGroups(compile ? findGroups(g) : []);
  const elementwiseParts = declined.flatMap(({ root, members, sum }): Group[] => {
    const reduces = g.eqns[root].prim === 'sum';
    if (!reduces && sum === undefined) return [];
    const rest = members.filter((m) => m !== (reduces ? root : sum));
    return rest.length > 1 ? [{ root: reduces ? rest[rest.length - 1] : root, members: rest }] : [];
  });
  const stillDeclined = fuseGroups(elementwiseParts).length + declined.length - elementwiseParts.length;
  const sumOf = convSums(g, writesSums);
  const pairedSums = new Set(sumOf.values());
  const steps: Step[] = [];
  g.eqns.forEach((e, i) => {
    const fused = fusedAt.get(i);
    const sum = sumOf.get(i);
    if (fused) steps.push(fused);
    else if (inGroup.has(i) || pairedSums.has(i)) return;
    else if (e.prim === 'reshape') steps.push({ kind: 'alias', ins: e.ins, out: e.out });
    else steps.push({ kind: 'prim', eqn: e, ins: e.ins, out: e.out, ...(sum !== undefined && { sums: g.eqns[sum].out }) });
  });
  return { steps, declined: stillDeclined, convSums: sumOf.size };
}
