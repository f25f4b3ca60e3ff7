/**
 * The CPU backend's jit fusion hook (`Backend.fuse`): a fused elementwise group becomes one loop over its output,
 * so intermediates are never stored (tinygrad's lazy elementwise fusion, XLA's loop fusion). float32 groups whose
 * ops have a vector form run as generated wasm SIMD loops over heap addresses (fast/fused.ts); every group also
 * gets a generated JS loop, which runs where the wasm one cannot (float64, ops without a vector form, large buffers
 * outside the wasm heap). Shapes are static in a compiled graph, so each loop is generated with its sizes and
 * strides as literals; the inner loop reads broadcast operands once per row. A reducing group (`FusedGroup.reduce`)
 * sums its values in float64 as eager's sum kernel does and writes the sums (and the values too where the group
 * says so). The kernels write into the caller's storage (jit's arena slots) and never decline a group.
 */
import type { FusedGroup, FusedKernel, FusedNode, FusedSums, KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { writesInto } from '../kernel.ts';
import { elementwiseExprs, lib } from './elementwise.ts';
import { compileWasmGroups } from './fast/fused.ts';
import { outputFor } from './layout.ts';
import { sizeOf } from '../../tensor/shape.ts';

/** A group's loop: writes `out` (the values, or a reducing group's sums) and, for a group writing both, `sums`. */
type Loop = (out: TypedArray, ins: readonly KernelArg<TypedArray>[], sums: TypedArray | null) => void;

/** The statements computing node `name` from its operands' names. */
function nodeLines(n: FusedNode, operands: readonly string[], name: string): string[] {
  if (n.prim === 'broadcastTo') return [`const ${name} = ${operands[0]};`];
  const sub = (src: string) => src.replace(/\b[abc]\b/g, (v) => operands['abc'.indexOf(v)]);
  const expr = elementwiseExprs[n.prim];
  if (!expr) throw new Error(`fused group: '${n.prim}' is not an elementwise primitive of the cpu backend`);
  return [`const ${name} = ${sub(expr[1])};`];
}

/**
 * Nested loops over the group's loop shape; leaves with inner stride 0 are read once per row. A reducing group adds
 * each value (rounded to the group's dtype, as eager stores its input) into float64 sums, a row's at a time where
 * the row is summed (as eager's sum kernel does), and writes the sums. (jit caches the kernels by group.)
 */
function jsLoop(g: FusedGroup): Loop {
  const dims = g.loopShape.length ? g.loopShape : [1];
  const zeros = () => dims.map(() => 0);
  const st = g.loopShape.length ? g.leaves.map((l) => l.strides) : g.leaves.map(zeros);
  const rs = g.reduce ? (g.loopShape.length ? g.reduce.strides : zeros()) : null;
  const r = dims.length;
  const inner = st.map((s) => s[r - 1]);
  const values = !rs || !!g.reduce?.values;
  const lines = [...(rs ? ['acc.fill(0);'] : []), ...(values ? ['let o = 0;'] : [])];
  const offset = (s: readonly number[]) => s.slice(0, r - 1).map((x, d) => (x ? `i${d} * ${x}` : '')).filter(Boolean).join(' + ') || '0';
  for (let d = 0; d < r - 1; d++) lines.push(`for (let i${d} = 0; i${d} < ${dims[d]}; i${d}++) {`);
  st.forEach((s, k) => {
    lines.push(`const b${k} = ${offset(s)};`);
    if (inner[k] === 0) lines.push(`const v${k} = I${k}[b${k}];`);
  });
  const rowSum = rs !== null && rs[r - 1] === 0;
  if (rs) lines.push(`const bo = ${offset(rs)};`, ...(rowSum ? ['let s = 0;'] : []));
  lines.push(`for (let j = 0; j < ${dims[r - 1]}; j++) {`);
  st.forEach((_, k) => {
    if (inner[k] !== 0) lines.push(`const v${k} = I${k}[b${k} + ${inner[k] === 1 ? 'j' : `j * ${inner[k]}`}];`);
  });
  g.nodes.forEach((n, i) => lines.push(...nodeLines(n, n.args.map((a) => ('leaf' in a ? `v${a.leaf}` : `t${a.node}`)), `t${i}`)));
  const y = `t${g.nodes.length - 1}`;
  const value = g.dtype === 'float32' ? `Math.fround(${y})` : y;
  if (values) lines.push(`out[o++] = ${y};`);
  if (!rs) lines.push('}');
  else if (rowSum) lines.push(`s += ${value};`, '}', 'acc[bo] += s;');
  else lines.push(`acc[bo + ${rs[r - 1] === 1 ? 'j' : `j * ${rs[r - 1]}`}] += ${value};`, '}');
  for (let d = 0; d < r - 1; d++) lines.push('}');
  if (rs) lines.push(`${values ? 'sums' : 'out'}.set(acc);`);
  // A named function, so profiles say which ops a loop runs.
  const fn = `fused_${g.nodes.map((n) => n.prim).join('_').slice(0, 80)}${rs ? '_sum' : ''}`;
  const src = `return function ${fn}(out, ins, sums) {\n${st.map((_, k) => `const I${k} = ins[${k}].storage;`).join(' ')}\n${lines.join('\n')}\n};`;
  const helpers = Object.keys(lib).map((k) => `const ${k} = lib.${k};`).join('\n');
  const acc = g.reduce ? new Float64Array(sizeOf(g.reduce.shape)) : null;
  return new Function('lib', 'acc', `${helpers}\n${src}`)(lib, acc) as Loop;
}

let jsFallbacks = 0;
/**
 * Calls of groups compiled to wasm that ran the JS loop instead (a buffer outside the wasm heap larger than
 * fast/heap.ts's STAGE_MAX_FLOATS): a statistic for tests and profiles.
 */
export const fusedJsFallbacks = (): number => jsFallbacks;

/**
 * The CPU backend's `fuse`: a wasm SIMD kernel where fast/fused.ts compiles one, else the JS loop, which is also
 * the wasm kernel's fallback per call (generated on first use).
 */
export function fuseCpu(groups: readonly FusedGroup[]): FusedKernel<TypedArray>[] {
  const wasm = compileWasmGroups(groups);
  return groups.map((g, i) => {
    const w = wasm[i];
    let loop: Loop | undefined;
    const kernel = (ins: readonly KernelArg<TypedArray>[], attrs: Partial<FusedSums<TypedArray>>, out: OutSpec) => {
      const y = outputFor(out);
      const sums = g.reduce?.values ? attrs.sums! : null;
      if (w?.(y, ins, sums)) return y;
      if (w) jsFallbacks++;
      (loop ??= jsLoop(g))(y, ins, sums);
      return y;
    };
    return Object.assign(writesInto(kernel), { via: w ? 'wasm-simd' : 'js' });
  });
}
