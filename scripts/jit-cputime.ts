/**
 * CPU time per B0 step, eager or jitted, for comparing builds on a shared machine (CPU time of all the process's
 * threads suffers less from other people's load than wall time does):
 *   npx tsx scripts/jit-cputime.ts ROOT MODE [REPS=3] [BATCH=16] [SIZE=128]
 * ROOT: a checkout whose src/ is measured (`.` for this one; a `git archive` of another commit for a before/after);
 * MODE: eager | jit (the train step: forward, BCE, backward, RMSprop; jit donates parameters, BN state and slots)
 * | infer-eager | infer-jit. Prints one JSON line: wall and CPU ms (median, min), bytes the kernels copied into or
 * out of the wasm heap per step (where the build counts them), and for jit the compiled step's `lower()` stats and
 * memory plan (MB).
 */
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
const [rootArg, mode, repsArg, bArg, sArg] = process.argv.slice(2);
if (!rootArg || !['eager', 'jit', 'infer-eager', 'infer-jit'].includes(mode)) throw new Error('usage: jit-cputime.ts ROOT eager|jit|infer-eager|infer-jit [REPS] [BATCH] [SIZE]');
const root = resolve(rootArg);
const E = await import(`${root}/src/index.ts`);
const { rmsprop } = await import(`${root}/src/train/optim.ts`);
let heapMod: any = null;
try { heapMod = await import(`${root}/src/backends/cpu/fast/heap.ts`); } catch {}
const reps = Number(repsArg ?? 3), batch = Number(bArg ?? 16), low = Number(sArg ?? 128);
const key = E.random.key(0);
const model = E.nn.createModel('b0', { key, lowSize: low });
const input = E.random.normal(E.random.foldIn(key, 1), [batch, 3, low, low]);
const y = E.tensor(Float32Array.from({ length: batch }, (_, i) => i % 2), [batch, 1]);
const opt = rmsprop({ alpha: 0.99, eps: 1e-8 });
let fn: () => unknown; let lower: (() => any) | null = null;
if (mode === 'infer-eager') fn = () => E.dataSync(E.nn.predict(model, input));
else if (mode === 'infer-jit') {
  const fwd = E.jit((p: any, s: any, x: any) => E.nn.apply(model.config, p, s, x, { training: false, key })[0]);
  fn = () => E.dataSync(fwd(model.params, model.state, input));
  lower = () => fwd.lower(model.params, model.state, input);
} else if (mode === 'jit') {
  const step = E.jit((p: any, s: any, slots: any, k: any) => {
    const [[loss, ns], g] = E.valueAndGrad((q: any) => {
      const [logits, st] = E.nn.apply(model.config, q, s, input, { training: true, key: k });
      return [E.binaryCrossEntropyWithLogits(logits, y), st];
    }, { hasAux: true })(p);
    const [np, os] = opt.update(g, { name: 'rmsprop', step: 0, slots }, p, 1e-3);
    return { loss, params: np, state: ns, slots: os.slots };
  }, { donate: [0, 1, 2] });
  let params = model.params, state = model.state, slots = opt.init(params).slots, n = 0;
  fn = () => { const r = step(params, state, slots, E.random.foldIn(key, 100 + n++)); [params, state, slots] = [r.params, r.state, r.slots]; return E.item(r.loss); };
  lower = () => step.lower(params, state, slots, key);
} else {
  let params = model.params, state = model.state, ostate = opt.init(params), step = 0;
  const lossGrad = E.valueAndGrad((p: any) => {
    const [logits, s] = E.nn.apply(model.config, p, state, input, { training: true, key: E.random.foldIn(key, 100 + step) });
    return [E.binaryCrossEntropyWithLogits(logits, y), s];
  }, { hasAux: true });
  fn = () => { const [[loss, s], g] = lossGrad(params); [params, ostate] = opt.update(g, ostate, params, 1e-3); state = s; step++; return E.item(loss); };
}
const t0 = performance.now(); fn(); const first = performance.now() - t0;
const walls: number[] = [], cpus: number[] = [];
const h = heapMod?.wasmHeap?.();
const c0 = h?.copiedBytes ?? 0;
const mem = (): number => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
const m0 = mem();
for (let i = 0; i < reps; i++) {
  const c = process.cpuUsage(); const t = performance.now();
  fn();
  walls.push(performance.now() - t); const d = process.cpuUsage(c); cpus.push((d.user + d.system) / 1000);
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const out: any = { mode, first: Math.round(first), wallMed: Math.round(med(walls)), wallMin: Math.round(Math.min(...walls)), cpuMed: Math.round(med(cpus)), cpuMin: Math.round(Math.min(...cpus)), heapDeltaPerStep: Math.round((mem() - m0) / reps) };
if (h && h.copiedBytes !== undefined) out.copiedMBPerStep = +((h.copiedBytes - c0) / reps / 2 ** 20).toFixed(2);
if (lower) { const l = lower(); out.stats = { ...l.stats, compileMs: Math.round(l.stats.compileMs) }; out.memoryMB = Object.fromEntries(Object.entries(l.memory).map(([k, v]: any) => [k, +(v / 2 ** 20).toFixed(1)])); }
console.log(JSON.stringify(out));
process.exit(0);
