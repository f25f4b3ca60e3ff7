/**
 * The memory plan (XLA's buffer assignment, in small). Every value a step computes is a buffer
 * with a lifetime [defining step, last read]; a reshape shares its input's buffer and extends its
 * lifetime. Buffers that reach an output are allocated per call (or take a donated input's buffer
 * when that is safe); the rest are placed in one arena, largest first, each at the best-fitting
 * gap among the buffers whose lifetimes overlap it — so buffers that are never live together share
 * bytes, and the arena's size is the peak of live intermediates (plus fragmentation). Results of
 * kernels that cannot write into a given buffer (no `writesInto` mark) keep their own storage.
 */
import type { Graph } from './graph.ts';
import { isElementwise, type Step } from './fuse.ts';
import { bytesPerElement } from '../backends/kernel.ts';

const ALIGN = 64;
const bytesOf = bytesPerElement;

/** How a variable gets its storage. */
export type Placement =
  | { readonly kind: 'given' } // an input, a constant or a host draw: storage supplied per call
  | { readonly kind: 'alias'; readonly of: number } // a reshape: the storage of var `of`
  | { readonly kind: 'arena'; readonly offset: number }
  | { readonly kind: 'fresh' } // reaches an output: a new array per call
  | { readonly kind: 'owned' } // from a kernel that allocates its own output (no `writesInto`)
  | { readonly kind: 'none' } // computed by no step (inside a fused group, or rewritten away): no storage
  | { readonly kind: 'donated'; readonly input: number }; // writes into tensor input `input`'s buffer

export interface MemoryPlan {
  readonly placement: Placement[];
  /** Arena bytes (the peak of live intermediates, with alignment and fragmentation). */
  readonly arenaBytes: number;
  /** What the intermediates would take without reuse (every one its own buffer). */
  readonly unplannedBytes: number;
  /** The arena size if every kernel wrote into it (own-output kernels' results included): the live intermediates a wasm32 memory must hold. */
  readonly intermediateBytes: number;
  /** Bytes of the outputs allocated per call (not counting those written into donated buffers). */
  readonly freshBytes: number;
  /** Bytes of outputs written into donated input buffers. */
  readonly donatedBytes: number;
}

/** The variable whose buffer `v` uses (follows reshapes). */
function rootsOf(g: Graph, steps: readonly Step[]): number[] {
  const root = g.vars.map((v) => v.id);
  for (const s of steps) if (s.kind === 'alias') root[s.out] = root[s.ins[0]];
  return root;
}

/** Step index defining each root buffer, and the last step reading any alias of it (steps.length for outputs). */
function lifetimes(g: Graph, steps: readonly Step[], root: readonly number[]) {
  const def = new Array<number>(g.vars.length).fill(-1);
  const last = new Array<number>(g.vars.length).fill(-1);
  steps.forEach((s, i) => {
    if (s.kind !== 'alias' && def[s.out] < 0) def[s.out] = i;
    if (s.kind !== 'alias' && s.sums !== undefined) def[s.sums] = i;
    for (const v of s.ins) last[root[v]] = Math.max(last[root[v]], i);
  });
  for (const o of g.outputs) if ('v' in o) last[root[o.v]] = steps.length;
  return { def, last };
}

/** Whether step `s` may write its output over input buffer `r` (read at the same index it writes). */
function inPlaceSafe(g: Graph, s: Step, r: number, root: readonly number[]): boolean {
  // siluGrad's fast kernel writes σ into its output before reading x: never in place.
  const elementwise = (s.kind === 'fused' && !s.group.reduce) || (s.kind === 'prim' && isElementwise(s.eqn.prim) && s.eqn.prim !== 'siluGrad');
  const size = g.vars[s.out].size;
  return elementwise && s.ins.every((v) => root[v] !== r || g.vars[v].size === size);
}

export function planMemory(g: Graph, steps: readonly Step[], donate: readonly boolean[], writesInto: (s: Step & { kind: 'prim' | 'fused' }) => boolean): MemoryPlan {
  const root = rootsOf(g, steps);
  const { def, last } = lifetimes(g, steps, root);
  const placement: Placement[] = g.vars.map((v) => (v.src.kind !== 'eqn' ? { kind: 'given' } : def[v.id] >= 0 ? { kind: 'fresh' } : { kind: 'none' }));
  steps.forEach((s) => {
    if (s.kind === 'alias') placement[s.out] = { kind: 'alias', of: s.ins[0] };
    else if (!writesInto(s)) placement[s.out] = { kind: 'owned' };
  });
  const outRoots = new Set<number>();
  for (const o of g.outputs) if ('v' in o && placement[root[o.v]].kind === 'fresh') outRoots.add(root[o.v]);
  const { freshBytes, donatedBytes } = assignDonated(g, steps, donate, root, def, last, outRoots, placement);
  const item = (v: (typeof g.vars)[number]) => ({ id: v.id, bytes: align(v.size * bytesOf(v.dtype)), from: def[v.id], to: Math.max(last[v.id], def[v.id]) });
  const interior = g.vars.filter((v) => !outRoots.has(v.id) && def[v.id] >= 0 && root[v.id] === v.id);
  const items = interior.filter((v) => placement[v.id].kind === 'fresh');
  const unplannedBytes = items.reduce((p, v) => p + align(v.size * bytesOf(v.dtype)), 0);
  const arenaBytes = placeAll(items.map(item), placement);
  const owned = interior.filter((v) => placement[v.id].kind === 'owned');
  const intermediateBytes = owned.length ? placeAll([...items, ...owned].map(item), [...placement]) : arenaBytes;
  return { placement, arenaBytes, unplannedBytes, intermediateBytes, freshBytes, donatedBytes };
}

/**
 * Gives outputs the buffers of donated inputs: same dtype and size, not themselves returned, and read for the last
 * time before the output is written (or by the step writing it, element by element). Outputs are served in the
 * order they are defined, each taking the free input read last: an input read before step s is free for every
 * output defined after s too, so serving the earliest-defined first leaves no output without a buffer that some
 * other order would have found one for (outputs of one step aside). (Taking them in output order instead lets a late output, a parameter's
 * update, take the buffer of an early one's input, a batch-norm running mean, and leaves the early one fresh: a new
 * array per call that the next call must copy into the wasm heap again.)
 */
function assignDonated(
  g: Graph,
  steps: readonly Step[],
  donate: readonly boolean[],
  root: readonly number[],
  def: readonly number[],
  last: readonly number[],
  outRoots: ReadonlySet<number>,
  placement: Placement[],
): { freshBytes: number; donatedBytes: number } {
  const returned = new Set(g.outputs.flatMap((o) => ('v' in o ? [root[o.v]] : [])));
  const free = g.vars.filter((v) => v.src.kind === 'input' && donate[(v.src as { index: number }).index] && !returned.has(v.id));
  let freshBytes = 0;
  let donatedBytes = 0;
  for (const r of [...outRoots].sort((a, b) => def[a] - def[b])) {
    const v = g.vars[r];
    const s = def[r];
    let k = -1;
    free.forEach((d, i) => {
      if (d.dtype !== v.dtype || d.size !== v.size || (k >= 0 && last[d.id] <= last[free[k].id])) return;
      if (last[d.id] < s || (last[d.id] === s && inPlaceSafe(g, steps[s], d.id, root))) k = i;
    });
    if (k >= 0) {
      placement[r] = { kind: 'donated', input: (free[k].src as { index: number }).index };
      free.splice(k, 1);
      donatedBytes += v.size * bytesOf(v.dtype);
    } else freshBytes += v.size * bytesOf(v.dtype);
  }
  return { freshBytes, donatedBytes };
}

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

interface Item {
  readonly id: number;
  readonly bytes: number;
  readonly from: number;
  readonly to: number;
}

/** Greedy placement, largest first, each at the smallest gap that fits among overlapping live buffers. */
function placeAll(items: Item[], placement: Placement[]): number {
  items.sort((a, b) => b.bytes - a.bytes || a.from - b.from);
  const placed: (Item & { offset: number })[] = [];
  let top = 0;
  for (const it of items) {
    const busy = placed.filter((p) => p.from <= it.to && it.from <= p.to).sort((a, b) => a.offset - b.offset);
    let best = -1;
    let bestGap = Infinity;
    let cursor = 0;
    for (const p of busy) {
      const gap = p.offset - cursor;
      if (gap >= it.bytes && gap < bestGap) [best, bestGap] = [cursor, gap];
      cursor = Math.max(cursor, p.offset + p.bytes);
    }
    const offset = best >= 0 ? best : cursor;
    placed.push({ ...it, offset });
    placement[it.id] = { kind: 'arena', offset };
    top = Math.max(top, offset + it.bytes);
  }
  return top;
}
