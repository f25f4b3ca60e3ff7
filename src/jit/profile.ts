/**
 * Where a compiled call's time goes (`Jitted.profile`, in the spirit of tf.profile and jax.profiler): every step of
 * the graph timed on the wall clock, summed per operation label and per category. Labels say what a step is: a
 * primitive by name, a convolution with its kind and geometry ("conv2dAffine depthwise 5×5"; "… → sum" when its step
 * also writes the sums over its output planes), a fused group by the primitives it runs ("fused mul+add+silu",
 * "fused affine+siluGrad → sum"). Categories gather labels the way a comparison with another engine's profile needs
 * them: pointwise, depthwise, dense and stochastic convolutions (forward and gradients apart; a depthwise conv's
 * plane sums count with its forward), elementwise work, reductions, matrix products, data movement.
 *
 * A step's time is that of its kernel call on this thread, which includes the pool's other threads' share of it
 * (the call returns when they are done). On a backend that queues work for a device (webgpu), it is the time to
 * queue, not to run.
 */
import type { Graph } from './graph.ts';
import type { Step } from './fuse.ts';

/** One label's total over a call. */
export interface ProfileRow {
  readonly label: string;
  readonly category: string;
  /** Steps with this label. */
  readonly calls: number;
  readonly ms: number;
  /** Of the call's step time. */
  readonly share: number;
}

export interface Profile {
  /** Wall time of the whole call (steps, argument staging, output wrapping). */
  readonly totalMs: number;
  /** Sum of the steps' times. */
  readonly stepsMs: number;
  readonly steps: number;
  /** Per label, largest first. */
  readonly rows: readonly ProfileRow[];
  /** Per category, largest first (`label` is the category). */
  readonly categories: readonly ProfileRow[];
}

const CONV = new Set(['conv2d', 'conv2dAffine', 'conv2dGradInput', 'conv2dGradFilter']);
const STOCHASTIC = new Set(['stochasticConv2d', 'stochasticConv2dGradInput', 'stochasticConv2dGradFilter']);
const MOVEMENT = new Set(['transpose', 'broadcastTo', 'concat', 'slice', 'pad', 'reshape', 'cast', 'copy']);
const REDUCTIONS = new Set(['sum', 'max', 'moments', 'mean']);

/** The kind of a conv step: pointwise (1×1, one group), dense, depthwise (one input channel per group) or grouped. */
function convKind(step: Step & { kind: 'prim' }, g: Graph): { kind: string; taps: string } {
  const a = step.eqn.attrs as { groups: number; stride: readonly number[]; filterShape?: readonly number[] };
  const w = step.eqn.prim === 'conv2dGradFilter' ? a.filterShape! : g.vars[step.ins[1]].shape;
  const [, cg, kh, kw] = w;
  const stride = a.stride[0] > 1 || a.stride[1] > 1 ? `/${a.stride[0]}` : '';
  const kind = a.groups === 1 ? (kh * kw === 1 ? 'pointwise' : 'dense') : cg === 1 ? 'depthwise' : 'grouped';
  return { kind, taps: `${kh}×${kw}${stride}` };
}

/** What a step is, for a profile: its label and category. */
export function describeStep(step: Step, g: Graph): { label: string; category: string } {
  if (step.kind === 'alias') return { label: 'reshape', category: 'data movement' };
  if (step.kind === 'fused') {
    const prims = [...new Set(step.group.nodes.map((n) => n.prim))].join('+');
    const reduces = !!step.group.reduce;
    return { label: `fused ${prims}${reduces ? ' → sum' : ''}`, category: reduces ? 'reductions (fused with elementwise)' : 'elementwise (fused)' };
  }
  const prim = step.eqn.prim;
  if (CONV.has(prim)) {
    const { kind, taps } = convKind(step, g);
    const pass = prim === 'conv2dGradInput' ? 'input gradient' : prim === 'conv2dGradFilter' ? 'filter gradient' : 'forward';
    return { label: `${prim} ${kind} ${taps}${step.sums !== undefined ? ' → sum' : ''}`, category: `${kind} conv, ${pass}` };
  }
  if (STOCHASTIC.has(prim)) return { label: prim, category: 'stochastic conv' };
  if (prim === 'matmul') return { label: prim, category: 'matmul' };
  if (REDUCTIONS.has(prim)) return { label: prim, category: 'reductions' };
  if (MOVEMENT.has(prim)) return { label: prim, category: 'data movement' };
  return { label: prim, category: prim.startsWith('maxPool') || prim.startsWith('avgPool') ? 'pooling' : 'elementwise and other' };
}

/** Sums timed steps (index, ms) into a profile. */
export function summarize(g: Graph, steps: readonly Step[], times: readonly (readonly [number, number])[], totalMs: number): Profile {
  const byLabel = new Map<string, { category: string; calls: number; ms: number }>();
  let stepsMs = 0;
  for (const [i, ms] of times) {
    const { label, category } = describeStep(steps[i], g);
    const r = byLabel.get(label) ?? { category, calls: 0, ms: 0 };
    r.calls++;
    r.ms += ms;
    byLabel.set(label, r);
    stepsMs += ms;
  }
  const rows = [...byLabel].map(([label, r]) => ({ label, ...r, share: stepsMs > 0 ? r.ms / stepsMs : 0 })).sort((a, b) => b.ms - a.ms);
  const byCat = new Map<string, { calls: number; ms: number }>();
  for (const r of rows) {
    const c = byCat.get(r.category) ?? { calls: 0, ms: 0 };
    c.calls += r.calls;
    c.ms += r.ms;
    byCat.set(r.category, c);
  }
  const categories = [...byCat].map(([label, c]) => ({ label, category: label, ...c, share: stepsMs > 0 ? c.ms / stepsMs : 0 })).sort((a, b) => b.ms - a.ms);
  return { totalMs, stepsMs, steps: times.length, rows, categories };
}

/** A profile as a text table: the categories, then the `top` largest labels. */
export function formatProfile(p: Profile, top = 15): string {
  const line = (r: ProfileRow) => `${r.ms.toFixed(1).padStart(9)} ms ${(100 * r.share).toFixed(1).padStart(5)}% ${String(r.calls).padStart(5)}×  ${r.label}`;
  return [
    `call ${p.totalMs.toFixed(1)} ms, ${p.steps} steps ${p.stepsMs.toFixed(1)} ms`,
    'by category:',
    ...p.categories.map(line),
    `largest ${Math.min(top, p.rows.length)} of ${p.rows.length} operations:`,
    ...p.rows.slice(0, top).map(line),
  ].join('\n');
}
