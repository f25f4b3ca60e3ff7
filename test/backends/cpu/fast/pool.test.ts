/**
 * The pool's Job across full collections: its optimized `call` survives them (JOB_MAP_KEEPER keeps Job's map alive;
 * without it every full collection that leaves no job alive drops the map and deoptimizes `call`).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { Job, type PoolKernel, S } from '../../../../src/backends/cpu/fast/pool.ts';

describe('pool Job', () => {
  it('keeps Job.prototype.call optimized through full collections that leave no job alive', () => {
    setFlagsFromString('--allow-natives-syntax');
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const natives = (body: string) => new Function('f', body) as (f: unknown) => number;
    const status = natives('return %GetOptimizationStatus(f)');
    const prepare = natives('%PrepareFunctionForOptimization(f)');
    const optimizeNext = natives('%OptimizeFunctionOnNextCall(f)');
    // V8's OptimizationStatus bit for "optimized" (runtime-test.cc).
    const OPTIMIZED = 1 << 4;
    const k = { mod: 1, fn: 2, name: 'k' } as unknown as PoolKernel;
    // Jobs that never run: built and dropped, as a kernel's job is once it has run.
    const build = () => {
      const job = new Job();
      const s = S(0);
      for (let i = 0; i < 100; i++) job.call(k, i, s);
    };
    const call = Job.prototype.call;
    prepare(call);
    build();
    build();
    optimizeNext(call);
    build();
    expect(status(call) & OPTIMIZED, 'optimized before the collections').toBe(OPTIMIZED);
    gc();
    gc();
    build();
    expect(status(call) & OPTIMIZED, 'optimized after them').toBe(OPTIMIZED);
  });
});
