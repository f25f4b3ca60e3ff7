/** Runs the learner examples as a user would (`npx tsx examples/…`, importing '@stochconv/engine'), so they never rot. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const run = (file: string) => execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: root, encoding: 'utf8' });

describe('examples', () => {
  it('01 fits a line', () => {
    const m = /w = ([\d.-]+), b = ([\d.-]+)/.exec(run('examples/01-fit-a-line.ts'));
    expect(Math.abs(Number(m![1]) - 3)).toBeLessThan(0.05);
    expect(Math.abs(Number(m![2]) - 2)).toBeLessThan(0.05);
  });
  it('02 trains an MLP on two spirals', () => {
    const acc = Number(/training accuracy: ([\d.]+)%/.exec(run('examples/02-mlp.ts'))![1]);
    expect(acc).toBeGreaterThan(95);
  });
  it('03 trains a tiny conv net', () => {
    const acc = Number(/training accuracy: ([\d.]+)%/.exec(run('examples/03-tiny-convnet.ts'))![1]);
    expect(acc).toBeGreaterThan(95);
  });
});
