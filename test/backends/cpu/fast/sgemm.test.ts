/** The wasm SIMD sgemm against the plain TS gemm (the reference), over random shapes, transposes, strides, alpha/beta. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { availableParallelism } from 'node:os';
import { gemm } from '../../../../src/backends/cpu/matmul.ts';
import * as E from '../../../../src/index.ts';
import { DEFAULT_SHAPE, gemmTasks, reconfigureSgemm, sgemmBatchPtr, sgemmPanelWidth, sgemmSumPtr } from '../../../../src/backends/cpu/fast/sgemm.ts';
import { poolThreads, setPoolThreads, taskCount } from '../../../../src/backends/cpu/fast/pool.ts';
import { setSgemmMaxCallBytes, setSgemmThreads, sgemm, sgemmIsWasm, sgemmPtr, sgemmThreads, sgemmWorkerTasks, wasmHeap } from '../../../../src/backends/cpu/fast/index.ts';
import { affineF32 } from '../../../../src/backends/cpu/fast/activations.ts';

interface Case {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  beta: number;
  padA: number;
  padB: number;
  padC: number;
  aOff: number;
  bOff: number;
  cOff: number;
  seed: number;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

/** Runs sgemm on the case and checks every element of C (inside the block: vs reference; outside: untouched). */
function checkCase(c: Case): void {
  const { transA, transB, M, N, K, alpha, beta } = c;
  const rnd = lcg(c.seed);
  const lda = (transA ? M : K) + c.padA;
  const ldb = (transB ? K : N) + c.padB;
  const ldc = N + c.padC;
  const A = Float32Array.from({ length: c.aOff + (transA ? K : M) * lda }, rnd);
  const B = Float32Array.from({ length: c.bOff + (transB ? N : K) * ldb }, rnd);
  const C0 = Float32Array.from({ length: c.cOff + M * ldc + 3 }, rnd);
  const C = C0.slice();
  sgemm(transA, transB, M, N, K, alpha, A, c.aOff, lda, B, c.bOff, ldb, beta, C, c.cOff, ldc);

  // Reference: the backend's TS gemm in float64 (C compact M×N), then alpha/beta; and Σ|a||b| for the tolerance.
  const P = new Float64Array(M * N);
  const Q = new Float64Array(M * N);
  const absA = A.map(Math.abs);
  const absB = B.map(Math.abs);
  const [sam, sak] = transA ? [1, lda] : [lda, 1];
  const [sbk, sbn] = transB ? [1, ldb] : [ldb, 1];
  gemm(A, c.aOff, sam, sak, B, c.bOff, sbk, sbn, P, 0, M, N, K);
  gemm(absA, c.aOff, sam, sak, absB, c.bOff, sbk, sbn, Q, 0, M, N, K);
  const inside = new Uint8Array(C.length);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      const at = c.cOff + i * ldc + j;
      inside[at] = 1;
      const want = alpha * P[i * N + j] + (beta === 0 ? 0 : beta * C0[at]);
      const tol = 1e-6 * (K + 4) * (Math.abs(alpha) * Q[i * N + j] + Math.abs(beta * C0[at])) + 1e-6;
      if (!(Math.abs(C[at] - want) <= tol)) {
        throw new Error(`C[${i},${j}] = ${C[at]}, want ${want} (tol ${tol}) in ${JSON.stringify(c)}`);
      }
    }
  }
  for (let t = 0; t < C.length; t++) if (!inside[t] && C[t] !== C0[t]) throw new Error(`C[${t}] outside the block changed in ${JSON.stringify(c)}`);
}

const size = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 70 }));
const scalar = fc.constantFrom(0, 1, -1, 0.5, 2.25);
const arbCase: fc.Arbitrary<Case> = fc.record({
  transA: fc.boolean(),
  transB: fc.boolean(),
  M: size,
  N: size,
  K: size,
  alpha: scalar,
  beta: scalar,
  padA: fc.integer({ min: 0, max: 3 }),
  padB: fc.integer({ min: 0, max: 3 }),
  padC: fc.integer({ min: 0, max: 3 }),
  aOff: fc.integer({ min: 0, max: 5 }),
  bOff: fc.integer({ min: 0, max: 5 }),
  cOff: fc.integer({ min: 0, max: 5 }),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

const base: Case = { transA: false, transB: false, M: 1, N: 1, K: 1, alpha: 1, beta: 0, padA: 0, padB: 0, padC: 0, aOff: 0, bOff: 0, cOff: 0, seed: 7 };

describe('sgemm (wasm SIMD)', () => {
  it('runs on wasm SIMD, with worker threads that take tasks where the machine has cores', () => {
    expect(sgemmIsWasm()).toBe(true);
    if (availableParallelism() < 2 || process.env.STOCHCONV_THREADS) return;
    expect(sgemmThreads()).toBeGreaterThanOrEqual(2);
    // A worker claims tasks only when the scheduler runs it while work is left: call until one has (bounded).
    const n = 256;
    const A = new Float32Array(n * n).fill(0.5);
    const C = new Float32Array(n * n);
    const before = sgemmWorkerTasks();
    const t0 = Date.now();
    while (sgemmWorkerTasks() === before && Date.now() - t0 < 20_000) sgemm(false, false, n, n, n, 1, A, 0, n, A, 0, n, 0, C, 0, n);
    expect(sgemmWorkerTasks()).toBeGreaterThan(before);
    expect(C[n * n - 1]).toBe(64);
  });

  it('matches the TS gemm on random shapes, transposes, offsets, leading dims, alpha and beta', () => {
    fc.assert(fc.property(arbCase, (c) => checkCase(c)), { numRuns: 300 });
  });

  it('covers cache-block edges and the threaded split (rows and columns)', () => {
    // K over KC = 256 (two k blocks: beta applied once), M over MC = 96, N over NC = 2048, ragged everywhere;
    // [8, 1100, 600] streams in column chunks (wide, short product).
    const shapes: [number, number, number][] = [[97, 131, 300], [13, 2101, 17], [200, 9, 40], [6, 8, 257], [1, 700, 513], [301, 1, 64], [8, 1100, 600]];
    for (const [M, N, K] of shapes) {
      for (const transA of [false, true]) for (const transB of [false, true]) {
        checkCase({ ...base, transA, transB, M, N, K, alpha: 0.5, beta: -1.5, padA: 1, padB: 2, padC: 3, aOff: 1, bOff: 2, cOff: 3, seed: M * N + K });
      }
    }
  });

  it('is correct with other micro-tiles and with tiny cache blocks (every block loop turns several times)', () => {
    try {
      for (const blocking of [{ MR: 6, NR: 8, MC: 12, KC: 8, NC: 16 }, { MR: 4, NR: 8, MC: 8, KC: 5, NC: 24, unroll: 3 }, { MR: 2, NR: 16, MC: 6, KC: 7, NC: 32, unroll: 2 }]) {
        reconfigureSgemm(blocking);
        fc.assert(fc.property(arbCase, (c) => checkCase(c)), { numRuns: 60 });
      }
    } finally {
      reconfigureSgemm(DEFAULT_SHAPE);
    }
  });

  it('packs A with vectors (4×4 transposes, or whole panels of a transposed A) to the same bits as element by element, k tails included', () => {
    // MR = 6 packs element by element; the micro-tile does not change any C element's sum (same k order, same KC).
    const h = wasmHeap()!;
    const run = (c: { M: number; N: number; K: number; transA: boolean; alpha: number; seed: number }): Float32Array => {
      const r = lcg(c.seed);
      const lda = (c.transA ? c.M : c.K) + 1;
      const A = Float32Array.from({ length: (c.transA ? c.K : c.M) * lda }, r), B = Float32Array.from({ length: c.K * c.N }, r);
      return h.withF32(A, (pA) => h.withF32(B, (pB) => h.withF32(new Float32Array(c.M * c.N), (pC) => (sgemmPtr(c.transA, false, c.M, c.N, c.K, c.alpha, pA, lda, pB, c.N, 0, pC, c.N), h.view(pC, c.M * c.N).slice()))));
    };
    const cases = fc.sample(
      fc.record({
        M: fc.integer({ min: 1, max: 30 }),
        N: fc.integer({ min: 1, max: 20 }),
        // 4q + 1…3: the vector loop's k tail; over KC now and then (a second k block)
        K: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 250, max: 270 })),
        transA: fc.boolean(),
        alpha: fc.constantFrom(1, 0.5, -2.25),
        seed: fc.integer({ min: 1, max: 1 << 30 }),
      }),
      60,
    );
    cases.push({ M: 200, N: 40, K: 259, transA: false, alpha: 1, seed: 3 }, { M: 200, N: 40, K: 259, transA: true, alpha: 0.5, seed: 4 });
    const vector = cases.map(run);
    try {
      reconfigureSgemm({ ...DEFAULT_SHAPE, MR: 6 });
      cases.forEach((c, i) => {
        const scalar = run(c);
        expect(vector[i].findIndex((v, j) => !Object.is(v, scalar[j])), `${JSON.stringify(c)}: first mismatch`).toBe(-1);
      });
    } finally {
      reconfigureSgemm(DEFAULT_SHAPE);
    }
  });

  it('is bit-identical on one and on all threads (each C element is summed in the same order)', () => {
    const M = 37, N = 523, K = 301;
    const r = lcg(3);
    const A = Float32Array.from({ length: M * K }, r);
    const B = Float32Array.from({ length: K * N }, r);
    const one = new Float32Array(M * N);
    const all = new Float32Array(M * N);
    const n = sgemmThreads();
    setSgemmThreads(1);
    sgemm(false, true, M, N, K, 1, A, 0, K, B, 0, K, 0, one, 0, N);
    setSgemmThreads(n);
    sgemm(false, true, M, N, K, 1, A, 0, K, B, 0, K, 0, all, 0, N);
    expect(all).toEqual(one);
  });

  it('splits products too large for one call into halves', () => {
    const old = setSgemmMaxCallBytes(20_000);
    try {
      for (const [transA, transB] of [[false, false], [true, true], [true, false]] as const) {
        checkCase({ ...base, transA, transB, M: 45, N: 77, K: 33, alpha: 1, beta: 0.5, padA: 2, padC: 1, cOff: 2, seed: 11 });
      }
    } finally {
      setSgemmMaxCallBytes(old);
    }
  });

  it('splits a product into a multiple of the thread count of about-128-wide stripes, of rows when M > N, one task when tiny', () => {
    const { MR, NR } = DEFAULT_SHAPE;
    // B0's 7×7 stage at batch 8, one product over all images: 392 columns, 1152 rows.
    expect(gemmTasks(1152, 392, 192, MR, NR, 2)).toEqual({ byCols: false, panels: 288, tasks: 10 });
    expect(gemmTasks(192, 392, 1152, MR, NR, 2)).toEqual({ byCols: true, panels: 49, tasks: 4 });
    expect(gemmTasks(96, 12544, 16, MR, NR, 2).tasks).toBe(64);
    expect(gemmTasks(1152, 392, 192, MR, NR, 3).tasks).toBe(9);
    expect(gemmTasks(8, 8, 8, MR, NR, 2).tasks).toBe(1);
    expect(gemmTasks(1152, 392, 192, MR, NR, 1).tasks).toBe(1);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4000 }), fc.integer({ min: 1, max: 4000 }), fc.integer({ min: 1, max: 512 }), fc.integer({ min: 2, max: 4 }), (M, N, K, T) => {
        const s = gemmTasks(M, N, K, MR, NR, T);
        // Stripes across the operand that is cheaper to re-pack per stripe: rows (B re-packed) when M > N.
        expect(s.byCols).toBe(M <= N);
        expect(s.panels).toBe(s.byCols ? Math.ceil(N / NR) : Math.ceil(M / MR));
        expect(s.tasks).toBeLessThanOrEqual(s.panels);
        if (s.tasks > 1 && s.tasks < s.panels && s.tasks < 64) expect(s.tasks % T).toBe(0);
      }),
    );
  });
  it.skipIf(poolThreads() < 2)(`other jobs also take a multiple of the thread count of tasks, at most 4 per thread${poolThreads() < 2 ? ' (skipped: one thread here)' : ''}`, () => {
    setPoolThreads(2);
    try {
      expect([1, 2, 3, 5, 8, 100].map(taskCount)).toEqual([2, 2, 4, 6, 8, 8]);
    } finally {
      setPoolThreads(Infinity);
    }
  });
  it('beta = 0 ignores NaN in C; alpha = 0 or K = 0 only scales C', () => {
    const A = new Float32Array([1, 2, 3, 4]);
    const C = new Float32Array([NaN, NaN, NaN, NaN]);
    sgemm(false, false, 2, 2, 2, 1, A, 0, 2, A, 0, 2, 0, C, 0, 2);
    expect(Array.from(C)).toEqual([7, 10, 15, 22]);
    sgemm(false, false, 2, 2, 2, 0, A, 0, 2, A, 0, 2, 2, C, 0, 2);
    expect(Array.from(C)).toEqual([14, 20, 30, 44]);
    sgemm(false, false, 2, 2, 0, 1, A, 0, 1, A, 0, 2, 0, C, 0, 2);
    expect(Array.from(C)).toEqual([0, 0, 0, 0]);
  });

  it('names the bad argument', () => {
    const x = new Float32Array(6);
    expect(() => sgemm(false, false, 2, 3, 1, 1, x, 0, 1, x, 0, 2, 0, x, 0, 3)).toThrow(/sgemm: ldb=2 < 3/);
    expect(() => sgemm(false, false, 2, 3, 4, 1, x, 0, 4, x, 0, 3, 0, x, 0, 3)).toThrow(/sgemm: A \(length 6\) too short/);
    expect(() => sgemm(false, false, -1, 3, 4, 1, x, 0, 4, x, 0, 3, 0, x, 0, 3)).toThrow(/sgemm: sizes/);
  });
});

describe('cpu matmul float32 through sgemm', () => {
  it('matches the float64 TS path with broadcast batches and both transposes', () => {
    const k = E.random.key(5);
    for (const [transposeA, transposeB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const a = E.random.normal(E.random.foldIn(k, 1), transposeA ? [3, 1, 40, 33] : [3, 1, 33, 40]);
      const b = E.random.normal(E.random.foldIn(k, 2), transposeB ? [2, 29, 40] : [2, 40, 29]);
      const y32 = E.dataSync(E.matmul(a, b, { transposeA, transposeB }));
      const y64 = E.dataSync(E.matmul(E.cast(a, 'float64'), E.cast(b, 'float64'), { transposeA, transposeB }));
      expect(y32).toBeInstanceOf(Float32Array);
      expect(y32.length).toBe(3 * 2 * 33 * 29);
      let err = 0;
      for (let i = 0; i < y32.length; i++) err = Math.max(err, Math.abs(y32[i] - y64[i]));
      expect(err).toBeLessThan(1e-4);
    }
  });
});

describe('sgemm with a per-row epilogue (batch norm folded into a conv, then SiLU)', () => {
  const sig64 = (z: number) => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));
  interface EpiCase {
    M: number;
    N: number;
    K: number;
    transA: boolean;
    beta: number;
    silu: boolean;
    inHeap: boolean;
    seed: number;
  }

  /**
   * C ← act((alpha·op(A)·B + beta·C)·scale[i] + shift[i]) against float64: the product's bound as in checkCase, times
   * the affine's |scale| and SiLU's slope (≤ 1.1), plus SiLU's own relative error, 1.7e−7·(1 + |z|) (vmath.ts), with margin.
   */
  function checkEpi(c: EpiCase): void {
    const { M, N, K, transA, beta, silu } = c;
    const rnd = lcg(c.seed);
    const alpha = 0.75;
    const h = wasmHeap()!;
    const A = Float32Array.from({ length: M * K }, rnd);
    const B = Float32Array.from({ length: K * N }, rnd);
    const C0 = Float32Array.from({ length: M * N }, rnd);
    const sc = Float32Array.from({ length: M }, () => 4 * rnd());
    const sh = Float32Array.from({ length: M }, () => 3 * rnd());
    const P = new Float64Array(M * N), Q = new Float64Array(M * N);
    gemm(A, 0, transA ? 1 : K, transA ? M : 1, B, 0, N, 1, P, 0, M, N, K);
    gemm(A.map(Math.abs), 0, transA ? 1 : K, transA ? M : 1, B.map(Math.abs), 0, N, 1, Q, 0, M, N, K);
    const got = h.withF32(sc, (ps) =>
      h.withF32(sh, (pb) => {
        const epi = { scale: ps, shift: pb, act: silu ? ('silu' as const) : undefined };
        if (!c.inHeap) {
          const C = C0.slice();
          sgemm(transA, false, M, N, K, alpha, A, 0, transA ? M : K, B, 0, N, beta, C, 0, N, epi);
          return C;
        }
        return h.withF32(A, (pA) => h.withF32(B, (pB) => h.withF32(C0, (pC) => (sgemmPtr(transA, false, M, N, K, alpha, pA, transA ? M : K, pB, N, beta, pC, N, epi), h.view(pC, M * N).slice()))));
      }),
    );
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        const at = i * N + j;
        const z = (alpha * P[at] + (beta === 0 ? 0 : beta * C0[at])) * sc[i] + sh[i];
        const want = silu ? z * sig64(z) : z;
        const tolC = 1e-6 * (K + 4) * (alpha * Q[at] + Math.abs(beta * C0[at])) + 1e-6;
        const tol = 1.1 * (Math.abs(sc[i]) * tolC + 1e-6 * Math.abs(z)) + 4e-7 * (1 + Math.abs(z)) * Math.abs(want) + 1e-30;
        if (!(Math.abs(got[at] - want) <= tol)) throw new Error(`C[${i},${j}] = ${got[at]}, want ${want} (tol ${tol}) in ${JSON.stringify(c)}`);
      }
    }
  }

  const arbEpi: fc.Arbitrary<EpiCase> = fc.record({
    M: size,
    N: size,
    // over KC = 256 now and then: the epilogue must wait for the last k block
    K: fc.oneof(size, fc.integer({ min: 250, max: 600 })),
    transA: fc.boolean(),
    beta: scalar,
    silu: fc.boolean(),
    inHeap: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  });

  it('matches the float64 formula on random shapes: ragged tiles, several k blocks, beta, typed arrays and heap operands', () => {
    fc.assert(fc.property(arbEpi, (c) => checkEpi(c)), { numRuns: 120 });
    // B0's shapes: a 1×1 expand conv and the stem (K = 27), one image's product, threaded.
    checkEpi({ M: 96, N: 4096, K: 16, transA: false, beta: 0, silu: true, inHeap: true, seed: 1 });
    checkEpi({ M: 32, N: 4099, K: 27, transA: false, beta: 0, silu: true, inHeap: false, seed: 2 });
  });

  it('holds with tiny cache blocks (many k blocks, MC and NC edges) and another micro-tile', () => {
    try {
      for (const blocking of [{ MR: 4, NR: 8, MC: 8, KC: 5, NC: 24 }, { MR: 6, NR: 8, MC: 12, KC: 8, NC: 16 }]) {
        reconfigureSgemm(blocking);
        fc.assert(fc.property(arbEpi, (c) => checkEpi({ ...c, K: Math.min(c.K, 40) })), { numRuns: 40 });
      }
    } finally {
      reconfigureSgemm(DEFAULT_SHAPE);
    }
  });

  it('is bit-identical to the product followed by the activations module’s affine (the same float32 operations)', () => {
    const M = 13, N = 531, K = 300, h = wasmHeap()!;
    const r = lcg(9);
    const A = Float32Array.from({ length: M * K }, r), B = Float32Array.from({ length: K * N }, r);
    const sc = Float32Array.from({ length: M }, r), sh = Float32Array.from({ length: M }, r);
    for (const act of [undefined, 'silu'] as const) {
      const fused = new Float32Array(M * N), plain = new Float32Array(M * N);
      h.withF32(sc, (ps) => h.withF32(sh, (pb) => sgemm(false, false, M, N, K, 1, A, 0, K, B, 0, N, 0, fused, 0, N, { scale: ps, shift: pb, act })));
      sgemm(false, false, M, N, K, 1, A, 0, K, B, 0, N, 0, plain, 0, N);
      expect(fused).toEqual(affineF32(plain, sc, sh, { N: 1, C: M, HW: N }, 'c', 'c', act));
    }
  });
});

describe('sgemmBatchPtr (one job over a batch of products)', () => {
  it('equals one sgemmPtr per product, bit for bit: shared or strided A, epilogue, batches over one job’s stripes', () => {
    const h = wasmHeap()!;
    // [M, N, K, count, strideA]: per-image convs (A shared), B0's expand at 32×32, many tiny products (several jobs).
    const shapes: [number, number, number, number, boolean][] = [[13, 300, 27, 5, false], [144, 1024, 24, 4, false], [7, 9, 5, 600, true], [33, 65, 290, 3, true]];
    for (const [M, N, K, count, ownA] of shapes) {
      const r = lcg(M + N + K);
      const sA = ownA ? M * K + 3 : 0, sB = K * N + 5, sC = M * N + 7;
      const A = Float32Array.from({ length: ownA ? count * sA : M * K }, r), B = Float32Array.from({ length: count * sB }, r);
      const sc = Float32Array.from({ length: M }, r), sh = Float32Array.from({ length: M }, r);
      h.withF32(A, (pA) => h.withF32(B, (pB) => h.withF32(sc, (ps) => h.withF32(sh, (pb) => {
        for (const epi of [undefined, { scale: ps, shift: pb, act: 'silu' as const }]) {
          const C0 = Float32Array.from({ length: count * sC }, r);
          const one = h.withF32(C0, (pC) => {
            for (let b = 0; b < count; b++) sgemmPtr(false, false, M, N, K, 0.5, pA + 4 * b * sA, K, pB + 4 * b * sB, N, 1.5, pC + 4 * b * sC, N, epi);
            return h.view(pC, C0.length).slice();
          });
          const all = h.withF32(C0, (pC) => {
            sgemmBatchPtr(false, false, M, N, K, 0.5, pA, K, pB, N, 1.5, pC, N, { count, strideA: sA, strideB: sB, strideC: sC }, epi);
            return h.view(pC, C0.length).slice();
          });
          // Bit for bit (Object.is per element: a plain loop, toEqual is slow on 10⁵ floats); the gaps between the
          // products' C blocks keep C0.
          const bad = all.findIndex((v, i) => !Object.is(v, one[i]) || (i % sC >= M * N && !Object.is(v, C0[i])));
          expect(bad, `${M}×${N}×${K} ×${count}: first mismatch`).toBe(-1);
        }
      }))));
    }
  });

  it('scales the rows of each product’s B as it packs them (GemmRowScale): bit for bit the product of the scaled B', () => {
    const h = wasmHeap()!;
    // [M, N, K, count]: a 1×1 conv per image after squeeze-excite (K = input channels), ragged panels, several k blocks.
    for (const [M, N, K, count] of [[24, 1024, 144, 3], [13, 37, 300, 4], [5, 6, 7, 2]]) {
      const r = lcg(M * N + K);
      const sB = K * N + 5, sC = M * N + 7, sS = K + 2;
      const A = Float32Array.from({ length: M * K }, r), B = Float32Array.from({ length: count * sB }, r);
      const S = Float32Array.from({ length: count * sS }, r), C0 = Float32Array.from({ length: count * sC }, r);
      const scaledB = B.map((v, i) => (i % sB < K * N ? v * S[Math.floor(i / sB) * sS + Math.floor((i % sB) / N)] : v));
      const batch = { count, strideA: 0, strideB: sB, strideC: sC };
      const product = (b: Float32Array, scale: boolean) =>
        h.withF32(A, (pA) => h.withF32(b, (pB) => h.withF32(S, (pS) => h.withF32(C0, (pC) => {
          sgemmBatchPtr(false, false, M, N, K, 1, pA, K, pB, N, 0, pC, N, batch, undefined, scale ? { ptr: pS, stride: sS } : undefined);
          return h.view(pC, C0.length).slice();
        }))));
      const got = product(B, true), want = product(scaledB, false);
      expect(got.findIndex((v, i) => !Object.is(v, want[i])), `${M}×${N}×${K} ×${count}: first mismatch`).toBe(-1);
    }
  });

  it('names a bad batch', () => {
    expect(() => sgemmBatchPtr(false, false, 2, 2, 2, 1, 0, 2, 0, 2, 0, 0, 2, { count: 1, strideA: 0, strideB: 4, strideC: 4 }, undefined, { ptr: 0, stride: 2 })).toThrow(/row scales at 0/);
    expect(() => sgemmBatchPtr(false, false, 2, 2, 2, 1, 0, 2, 0, 2, 0, 0, 2, { count: -1, strideA: 0, strideB: 4, strideC: 4 })).toThrow(/sgemmBatchPtr: batch count -1/);
    expect(() => sgemmBatchPtr(false, false, 2, 2, 0, 1, 0, 2, 0, 2, 0, 0, 2, { count: 2, strideA: 0, strideB: 4, strideC: 4 })).toThrow(/sgemmBatchPtr: K = 0/);
  });
});

describe('sgemmSumPtr (products summed into one C in one job)', () => {
  /** Σ_p op(A_p)·op(B_p) against one sgemmPtr per part (beta = 1 after the first): bit for bit. */
  function checkSum(M: number, N: number, K: number, count: number, transA: boolean, transB: boolean, beta: number, seed: number): void {
    const h = wasmHeap()!;
    const r = lcg(seed);
    const sA = M * K + 1, sB = K * N + 2;
    const A = Float32Array.from({ length: count * sA }, r), B = Float32Array.from({ length: count * sB }, r), C0 = Float32Array.from({ length: M * N }, r);
    const [lda, ldb] = [transA ? M : K, transB ? K : N];
    h.withF32(A, (pA) => h.withF32(B, (pB) => {
      const one = h.withF32(C0, (pC) => {
        for (let q = 0; q < count; q++) sgemmPtr(transA, transB, M, N, K, 0.5, pA + 4 * q * sA, lda, pB + 4 * q * sB, ldb, q === 0 ? beta : 1, pC, N);
        return h.view(pC, M * N).slice();
      });
      const all = h.withF32(C0, (pC) => (sgemmSumPtr(transA, transB, M, N, K, 0.5, pA, lda, pB, ldb, beta, pC, N, { count, strideA: sA, strideB: sB }), h.view(pC, M * N).slice()));
      expect(all.findIndex((v, i) => !Object.is(v, one[i])), `${M}×${N}×${K} ×${count} ${transA} ${transB} beta ${beta}: first mismatch`).toBe(-1);
    }));
  }

  it('equals one sgemmPtr per part, bit for bit (a conv filter gradient summed over images; k blocks; ragged tiles)', () => {
    fc.assert(
      fc.property(size, size, fc.oneof(size, fc.integer({ min: 250, max: 520 })), fc.integer({ min: 1, max: 6 }), fc.boolean(), fc.boolean(), scalar, fc.integer({ min: 1, max: 1 << 30 }), (M, N, K, count, tA, tB, beta, seed) =>
        checkSum(M, N, K, count, tA, tB, beta, seed),
      ),
      { numRuns: 60 },
    );
    checkSum(96, 16, 4096, 4, false, true, 1, 3); // B0's [96,16] 1×1 filter gradient at 64×64, 4 images
  });

  it('holds with tiny cache blocks', () => {
    try {
      reconfigureSgemm({ MR: 4, NR: 8, MC: 8, KC: 5, NC: 24 });
      fc.assert(fc.property(size, size, size, fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.integer({ min: 1, max: 1 << 30 }), (M, N, K, count, tB, seed) => checkSum(M, N, K, count, false, tB, 0, seed)), { numRuns: 30 });
    } finally {
      reconfigureSgemm(DEFAULT_SHAPE);
    }
  });
});

describe('sgemmPtr with images (op(B) and C addressed image by image, as a 1×1 conv over NCHW)', () => {
  interface ImgCase {
    M: number;
    K: number;
    /** Columns per image (any: an image's last panel is ragged when not a multiple of NR). */
    cols: number;
    count: number;
    /** Columns the last image lacks (N = count·cols − short). */
    short: number;
    transA: boolean;
    transB: boolean;
    alpha: number;
    beta: number;
    epi: 'none' | 'affine' | 'silu';
    /** Row scales of op(B) per image (GemmRowScale): the plain product then takes op(B) already scaled. */
    scaled: boolean;
    seed: number;
  }

  /**
   * The product with images against sgemmPtr on the same operands laid out as plain matrices (B: K×N or N×K, C:
   * M×N): bit for bit, and the gaps between the images' blocks of C untouched.
   */
  function checkImages(c: ImgCase): void {
    const { M, K, count, transA, transB, alpha, beta } = c;
    const h = wasmHeap()!;
    const cols = c.cols, N = count * cols - Math.min(c.short, cols - 1);
    const r = lcg(c.seed);
    const lda = (transA ? M : K) + 1, ldb = (transB ? K : cols) + 2, ldc = cols + 3;
    const [bRows, bCols] = transB ? [cols, K] : [K, cols];
    const strideB = bRows * ldb + 5, strideC = M * ldc + 6;
    const A = Float32Array.from({ length: (transA ? K : M) * lda }, r);
    const Bi = Float32Array.from({ length: count * strideB }, r), Ci = Float32Array.from({ length: count * strideC }, r);
    const sc = Float32Array.from({ length: M }, r), sh = Float32Array.from({ length: M }, r);
    // Row k of image n's op(B) times S[n·strideS + k] when scaled.
    const strideS = K + 3;
    const S = Float32Array.from({ length: count * strideS }, r);
    // The plain layout: op(B)(k, j) and C(i, j) with j = n·cols + p.
    const Bp = new Float32Array(K * N), Cp = new Float32Array(M * N);
    for (let j = 0; j < N; j++) {
      const n = Math.floor(j / cols), p = j % cols;
      for (let k = 0; k < K; k++) {
        const b = Bi[n * strideB + (transB ? p * ldb + k : k * ldb + p)];
        Bp[transB ? j * K + k : k * N + j] = c.scaled ? b * S[n * strideS + k] : b;
      }
      for (let i = 0; i < M; i++) Cp[i * N + j] = Ci[n * strideC + i * ldc + p];
    }
    expect(bCols).toBeLessThanOrEqual(ldb);
    const [got, want] = h.withF32(A, (pA) => h.withF32(sc, (ps) => h.withF32(sh, (pb) => {
      const epi = c.epi === 'none' ? undefined : { scale: ps, shift: pb, act: c.epi === 'silu' ? ('silu' as const) : undefined };
      const plain = h.withF32(Bp, (pB) => h.withF32(Cp, (pC) => (sgemmPtr(transA, transB, M, N, K, alpha, pA, lda, pB, transB ? K : N, beta, pC, N, epi), h.view(pC, M * N).slice())));
      const images = h.withF32(S, (pS) => h.withF32(Bi, (pB) => h.withF32(Ci, (pC) => {
        sgemmPtr(transA, transB, M, N, K, alpha, pA, lda, pB, ldb, beta, pC, ldc, epi, { cols, strideB, strideC }, c.scaled ? { ptr: pS, stride: strideS } : undefined);
        return h.view(pC, Ci.length).slice();
      })));
      return [images, plain];
    })));
    const inside = new Uint8Array(Ci.length);
    for (let j = 0; j < N; j++) {
      const n = Math.floor(j / cols), p = j % cols;
      for (let i = 0; i < M; i++) {
        const at = n * strideC + i * ldc + p;
        inside[at] = 1;
        if (!Object.is(got[at], want[i * N + j])) throw new Error(`C[${i},${j}] = ${got[at]}, plain ${want[i * N + j]} in ${JSON.stringify(c)}`);
      }
    }
    const bad = got.findIndex((v, t) => !inside[t] && !Object.is(v, Ci[t]));
    expect(bad, `a gap of C changed in ${JSON.stringify(c)}`).toBe(-1);
  }

  const arbImg: fc.Arbitrary<ImgCase> = fc.record({
    M: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 150 })),
    K: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 250, max: 300 })),
    cols: fc.oneof(fc.integer({ min: 1, max: 4 }).map((q) => q * sgemmPanelWidth()), fc.integer({ min: 1, max: 40 })),
    count: fc.integer({ min: 1, max: 9 }),
    short: fc.integer({ min: 0, max: 7 }),
    transA: fc.boolean(),
    transB: fc.boolean(),
    alpha: fc.constantFrom(1, 0.5),
    beta: fc.constantFrom(0, 1, 0.5),
    epi: fc.constantFrom('none', 'affine', 'silu'),
    scaled: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
  });

  it('equals the product on the plainly laid-out matrices, bit for bit: ragged M, stripes inside an image, epilogues, row scales', () => {
    fc.assert(fc.property(arbImg, (c) => checkImages(c)), { numRuns: 80 });
    // B0's 4×4-plane layers at batch 16 (forward, and the input gradient with W transposed), and 8×8 planes split in
    // column stripes that do not fall on image boundaries.
    const b0 = { short: 0, alpha: 1, beta: 0, transB: false, seed: 5, scaled: false } as const;
    checkImages({ ...b0, M: 1152, K: 192, cols: 16, count: 16, transA: false, epi: 'silu' });
    // A projection after squeeze-excite: its input scaled per image and channel.
    checkImages({ ...b0, M: 192, K: 1152, cols: 16, count: 16, transA: false, epi: 'affine', scaled: true });
    // 7×7 and 14×14 planes (224 px): each image's last panel ragged.
    checkImages({ ...b0, M: 1152, K: 192, cols: 49, count: 8, transA: false, epi: 'silu', scaled: true });
    checkImages({ ...b0, M: 80, K: 480, cols: 196, count: 8, transA: true, epi: 'none' });
    checkImages({ ...b0, M: 192, K: 1152, cols: 16, count: 16, transA: true, epi: 'none' });
    checkImages({ ...b0, M: 301, K: 37, cols: 64, count: 5, transA: false, epi: 'affine' });
  });

  it('holds with tiny cache blocks (NC and KC edges inside images) and another micro-tile', () => {
    try {
      for (const blocking of [{ MR: 4, NR: 8, MC: 8, KC: 5, NC: 24 }, { MR: 6, NR: 8, MC: 12, KC: 8, NC: 16 }]) {
        reconfigureSgemm(blocking);
        fc.assert(fc.property(arbImg, (c) => checkImages({ ...c, K: Math.min(c.K, 40) })), { numRuns: 30 });
      }
    } finally {
      reconfigureSgemm(DEFAULT_SHAPE);
    }
  });

  it('names images of no columns', () => {
    expect(() => sgemmPtr(false, false, 2, 12, 2, 1, 0, 2, 0, 12, 0, 0, 12, undefined, { cols: 0, strideB: 24, strideC: 24 })).toThrow(/images of 0 columns: need a positive integer/);
  });
});
