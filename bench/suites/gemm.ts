/**
 * sgemm (wasm SIMD, generated at run time) vs the plain TS gemm and TensorFlow.js matMul (tfjs-backend-wasm SIMD
 * with threads where Node allows, and tfjs-backend-cpu), same shapes, same run. Rows carry GFLOP/s = 2MNK / median.
 * Shapes: square 256³ and 1024³, and EfficientNet-B0 layers at batch 8 written as one GEMM (M = out channels,
 * K = in channels (× kernel taps), N = 8·H·W).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { gemm } from '../../src/backends/cpu/matmul.ts';
import { setSgemmThreads, sgemm, sgemmThreads } from '../../src/backends/cpu/fast/index.ts';
import { type Row, type Suite, matches, measure } from '../harness.ts';

type TF = typeof import('@tensorflow/tfjs');

interface Shape {
  readonly name: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
}

const SHAPES: Shape[] = [
  { name: '256x256x256', M: 256, N: 256, K: 256 },
  { name: '1024x1024x1024', M: 1024, N: 1024, K: 1024 },
  // Pointwise projection 8×96×56×56 → 24 (stage 2), and its expansion 24 → 144.
  { name: 'b0-pw-24x96x8.56.56', M: 24, N: 8 * 56 * 56, K: 96 },
  { name: 'b0-pw-144x24x8.56.56', M: 144, N: 8 * 56 * 56, K: 24 },
  // Stem as im2col: 32 filters over 3·3·3 taps at 112×112 outputs.
  { name: 'b0-stem-32x27x8.112.112', M: 32, N: 8 * 112 * 112, K: 27 },
  // Late pointwise 8×1152×7×7 → 192 (stage 6).
  { name: 'b0-pw-192x1152x8.7.7', M: 192, N: 8 * 7 * 7, K: 1152 },
];

/** One CommonJS TensorFlow.js instance with backend 'wasm' (SIMD, 2 threads if it can) or 'cpu'; a note says what it got. */
async function tfjsWith(backend: 'wasm' | 'cpu'): Promise<{ tf: TF; note: string } | null> {
  const req = createRequire(import.meta.url);
  let tf: TF;
  try {
    tf = req('@tensorflow/tfjs');
  } catch {
    return null;
  }
  if (backend === 'cpu') {
    await tf.setBackend('cpu');
    await tf.ready();
    return { tf, note: 'tfjs-cpu' };
  }
  const wasm = req('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/');
  wasm.setThreadsCount(2);
  if (!(await tf.setBackend('wasm'))) return null;
  await tf.ready();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const mt = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  return { tf, note: `tfjs-wasm SIMD ${simd ? 'on' : 'off'}, threads ${mt ? wasm.getThreadsCount() : 1}` };
}

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

export const gemmSuite: Suite = {
  name: 'gemm',
  description: 'sgemm (wasm SIMD, threads) vs TS gemm vs tfjs matMul (wasm, cpu) at square and B0 shapes',
  async run({ filter, quick }) {
    const rows: Row[] = [];
    const threads = sgemmThreads();
    const opts = quick ? { time: 150, iterations: 3 } : { time: 600, iterations: 7 };
    const row = (s: Shape, backend: string, r: { medianMs: number; samples: number; cpuMs: number }, extra: Record<string, unknown> = {}): Row => ({
      suite: 'gemm', name: s.name, backend, pass: 'forward', ...r, gflops: +((2 * s.M * s.N * s.K) / r.medianMs / 1e6).toFixed(2), ...extra,
    });
    // Also the mean process CPU time per call (all threads): on a shared, oversubscribed box wall medians swing
    // by 2-3x between runs while CPU time stays put.
    const measureCpu = async (fn: () => unknown, o: { time: number; iterations: number }) => {
      let calls = 0;
      const c0 = process.cpuUsage();
      const r = await measure(() => {
        calls++;
        return fn();
      }, o);
      const d = process.cpuUsage(c0);
      return { ...r, cpuMs: +((d.user + d.system) / 1000 / calls).toFixed(3) };
    };
    const data = SHAPES.map((s, i) => ({ s, A: rand(s.M * s.K, 2 * i + 1), B: rand(s.K * s.N, 2 * i + 2), C: new Float32Array(s.M * s.N) }));

    for (const { s, A, B, C } of data) {
      const call = () => sgemm(false, false, s.M, s.N, s.K, 1, A, 0, s.K, B, 0, s.N, 0, C, 0, s.N);
      if (matches(filter, 'gemm', s.name, 'cpu-sgemm', 'forward')) {
        setSgemmThreads(threads);
        rows.push(row(s, 'cpu-sgemm', await measureCpu(call, opts), { threads }));
      }
      if (threads > 1 && matches(filter, 'gemm', s.name, 'cpu-sgemm-1t', 'forward')) {
        setSgemmThreads(1);
        rows.push(row(s, 'cpu-sgemm-1t', await measureCpu(call, opts), { threads: 1 }));
        setSgemmThreads(threads);
      }
      // The TS reference: skipped on the 1 GFLOP+ shapes in quick mode (seconds per call).
      if (!(quick && s.M * s.N * s.K > 2e8) && matches(filter, 'gemm', s.name, 'cpu-ts', 'forward')) {
        rows.push(row(s, 'cpu-ts', await measureCpu(() => gemm(A, 0, s.K, 1, B, 0, s.N, 1, C, 0, s.M, s.N, s.K), { time: opts.time, iterations: quick ? 1 : 3 })));
      }
    }

    for (const backend of ['wasm', 'cpu'] as const) {
      const name = `tfjs-${backend}`;
      if (!data.some(({ s }) => matches(filter, 'gemm', s.name, name, 'forward'))) continue;
      const got = await tfjsWith(backend);
      if (!got) continue;
      const { tf, note } = got;
      for (const { s, A, B } of data) {
        if (!matches(filter, 'gemm', s.name, name, 'forward')) continue;
        if (backend === 'cpu' && quick && s.M * s.N * s.K > 2e8) continue;
        const a = tf.tensor2d(A, [s.M, s.K]);
        const b = tf.tensor2d(B, [s.K, s.N]);
        const r = await measureCpu(() => {
          const c = tf.matMul(a, b);
          c.dataSync();
          c.dispose();
        }, opts);
        rows.push(row(s, name, r, { note }));
        a.dispose();
        b.dispose();
      }
    }
    return rows;
  },
};
