/**
 * Full collections do not send the conv kernels' job-building loops back to the compiler. V8 keeps a closure's
 * optimized code only while a closure of it survives a full collection; loops written as a callback per call (one
 * closure per call) were recompiled after every collection, each time on the cores the kernels run on. The child
 * (recompile-child.ts) runs eager stochastic, dense, depthwise and pointwise convs with their gradients and a full
 * collection every second round, under --trace-opt; after its warm-up, 12 rounds and 6 collections compiled 3–4
 * functions with the loops in the kernels' own bodies, and 20 with them in per-call callbacks.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../../..');

describe('conv kernels across full collections', () => {
  it('are not recompiled after each full collection', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--expose-gc', '--trace-opt', path.join(here, 'recompile-child.ts')], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
    const lines = out.split('\n');
    const mark = lines.indexOf('RECOMPILE-MARK');
    expect(mark, 'the child reached its mark').toBeGreaterThanOrEqual(0);
    expect(lines).toContain('RECOMPILE-END');
    const compiled = lines.slice(mark).filter((l) => l.startsWith('[compiling method'));
    expect(compiled.length, compiled.join('\n')).toBeLessThanOrEqual(8);
  });
});
