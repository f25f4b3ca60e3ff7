/**
 * Eval-mode batch norm folded into the conv before it (XLA's and TensorRT's conv + BN folding, done on the traced
 * graph): a conv2d whose only reader is an affine with one scale and one shift per output channel — batch norm with
 * its running statistics, y = x·γ/σ + (β − μγ/σ), `act` its fused SiLU — becomes one conv2dAffine equation. The
 * backend's kernel applies the affine to each block of output while it is still in cache (the CPU conv kernels'
 * epilogues), so the activation is written once instead of written, re-read and written again. Scale and shift
 * stay inputs of the step, computed per call from the BN state, so the parameters are not baked in.
 *
 * Training-mode batch norm reads the conv output for its statistics too, and a gradient through an eval-mode affine
 * reads it for the scale's cotangent: the conv output then has other readers and the pair is left alone.
 *
 * With fusion on, an affine whose one reader is an elementwise op of its shape (BN before a residual add) is left
 * alone too: fusion runs it inside that op's loop, which reads the conv output once either way, so folding would
 * save no pass — and could leave the consumer a loop of its own (a lone op, which runs unfused).
 */
import { perChannel } from '../autograd/conv.ts';
import { shapesEqual } from '../tensor/shape.ts';
import { isElementwise, useCounts } from './fuse.ts';
import type { Eqn, Graph } from './graph.ts';

/** How many times each variable is read (useCounts), and the last equation reading it. */
function readers(g: Graph): { reads: number[]; reader: number[] } {
  const reader = new Array<number>(g.vars.length).fill(-1);
  g.eqns.forEach((e, i) => e.ins.forEach((v) => (reader[v] = i)));
  return { reads: useCounts(g), reader };
}

/** Whether the affine `e` would run inside its one reader's fused loop (an elementwise op of its shape). */
function absorbed(g: Graph, e: Eqn, r: ReturnType<typeof readers>): boolean {
  const next = r.reads[e.out] === 1 ? g.eqns[r.reader[e.out]] : undefined;
  return !!next && isElementwise(next.prim) && shapesEqual(g.vars[next.out].shape, g.vars[e.out].shape);
}

/** The conv2d equation (index) whose result the affine `e` scales per output channel as its only reader, or -1. */
function foldable(g: Graph, e: Eqn, reads: readonly number[]): number {
  if (e.prim !== 'affine') return -1;
  const [x, a, b] = e.ins;
  const src = g.vars[x].src;
  if (src.kind !== 'eqn' || src.eqn < 0 || reads[x] !== 1) return -1;
  const conv = g.eqns[src.eqn];
  const y = g.vars[x];
  const ok =
    conv.prim === 'conv2d' &&
    !conv.dynAttrs.length &&
    shapesEqual(g.vars[e.out].shape, y.shape) &&
    [a, b].every((v) => perChannel(g.vars[v].shape, y.shape) && g.vars[v].dtype === y.dtype);
  return ok ? src.eqn : -1;
}

/**
 * The graph with every foldable conv2d → affine pair replaced by one conv2dAffine equation (at the affine's place,
 * where the scale and shift are computed), and how many pairs were folded; `fusing`: the graph's elementwise ops
 * will be fused (then affines an elementwise consumer absorbs stay). The conv's result variable keeps its id but no
 * equation computes it any more (the memory plan gives it no storage).
 */
export function foldConvAffine(g: Graph, fusing: boolean): { graph: Graph; folded: number } {
  const r = readers(g);
  const replaced = new Map<number, Eqn>();
  const dropped = new Set<number>();
  g.eqns.forEach((e, i) => {
    const c = foldable(g, e, r.reads);
    if (c < 0 || (fusing && absorbed(g, e, r))) return;
    const conv = g.eqns[c];
    const act = (e.attrs as { act?: 'silu' } | undefined)?.act;
    replaced.set(i, { prim: 'conv2dAffine', ins: [conv.ins[0], conv.ins[1], e.ins[1], e.ins[2]], attrs: act ? { ...(conv.attrs as object), act } : conv.attrs, out: e.out, dynAttrs: [] });
    dropped.add(c);
  });
  return replaced.size ? { graph: rebuilt(g, replaced, dropped), folded: replaced.size } : { graph: g, folded: 0 };
}

/**
 * `g` with the equations at the indices of `replaced` replaced and those in `dropped` removed (their results keep
 * their ids, computed by no equation any more: the memory plan gives them no storage).
 */
function rebuilt(g: Graph, replaced: ReadonlyMap<number, Eqn>, dropped: ReadonlySet<number>): Graph {
  const renum = new Map<number, number>();
  const eqns: Eqn[] = [];
  g.eqns.forEach((e, i) => {
    if (dropped.has(i)) return;
    renum.set(i, eqns.length);
    eqns.push(replaced.get(i) ?? e);
  });
  const vars = g.vars.map((v) => (v.src.kind === 'eqn' ? { ...v, src: { kind: 'eqn' as const, eqn: renum.get(v.src.eqn) ?? -1 } } : v));
  return { vars, eqns, hosts: g.hosts, outputs: g.outputs };
}

/** Whether equation `e` is a 1×1, stride-1, unpadded, single-group conv2d / conv2dAffine (a matrix product per image). */
function pointwiseConv(g: Graph, e: Eqn): boolean {
  if ((e.prim !== 'conv2d' && e.prim !== 'conv2dAffine') || e.dynAttrs.length) return false;
  const a = e.attrs as { stride: readonly number[]; padding: readonly number[]; groups?: number };
  const w = g.vars[e.ins[1]].shape;
  return w.length === 4 && w[2] === 1 && w[3] === 1 && (a.groups ?? 1) === 1 && a.stride.every((s) => s === 1) && a.padding.every((q) => q === 0);
}

/**
 * The operand of `mul` that scales its other operand per image and channel: [N, C, 1, 1] against an [N, C, H, W]
 * float32 operand (directly, or through a broadcastTo only the mul reads, whose equation index comes third, else
 * -1), as [scale, scaled, broadcast]; null for any other mul.
 */
function channelScale(g: Graph, mul: Eqn, reads: readonly number[]): [number, number, number] | null {
  const full = g.vars[mul.out].shape;
  if (full.length !== 4 || g.vars[mul.out].dtype !== 'float32') return null;
  const isScale = (v: number) => {
    const s = g.vars[v].shape;
    return s.length === 4 && s[0] === full[0] && s[1] === full[1] && s[2] === 1 && s[3] === 1;
  };
  for (const [a, b] of [mul.ins, [...mul.ins].reverse()]) {
    if (!shapesEqual(g.vars[b].shape, full)) continue;
    if (isScale(a)) return [a, b, -1];
    const src = g.vars[a].src;
    const bc = src.kind === 'eqn' && src.eqn >= 0 ? src.eqn : -1;
    if (bc >= 0 && g.eqns[bc].prim === 'broadcastTo' && reads[a] === 1 && isScale(g.eqns[bc].ins[0])) return [g.eqns[bc].ins[0], b, bc];
  }
  return null;
}

/**
 * Squeeze-excite's gate folded into the 1×1 conv that reads the gated activations: conv(x·s) with s one value per
 * image and channel equals the conv with each image's input channels scaled as the kernel reads them (the scale is
 * applied to the same float32 products, so the result is bit-identical). The mul's output is then never stored: a
 * pass that wrote and re-read the block's widest activations disappears. Only where the mul's one reader is the
 * conv (training graphs read it again for the filter gradient and keep it) and only on a backend whose conv
 * kernels take the scale (`Kernel.inputScale`).
 */
export function foldInputScale(g: Graph, canScale: (prim: string) => boolean): { graph: Graph; folded: number } {
  const reads = useCounts(g);
  const replaced = new Map<number, Eqn>();
  const dropped = new Set<number>();
  g.eqns.forEach((e, i) => {
    if (!pointwiseConv(g, e) || !canScale(e.prim) || (e.attrs as { inputScale?: boolean }).inputScale) return;
    const x = e.ins[0];
    const src = g.vars[x].src;
    if (src.kind !== 'eqn' || src.eqn < 0 || reads[x] !== 1 || g.eqns[src.eqn].prim !== 'mul') return;
    const m = channelScale(g, g.eqns[src.eqn], reads);
    if (!m) return;
    const [scale, scaled, broadcast] = m;
    replaced.set(i, { ...e, ins: [scaled, ...e.ins.slice(1), scale], attrs: { ...(e.attrs as object), inputScale: true } });
    dropped.add(src.eqn);
    if (broadcast >= 0) dropped.add(broadcast);
  });
  return replaced.size ? { graph: rebuilt(g, replaced, dropped), folded: replaced.size } : { graph: g, folded: 0 };
}
