/**
 * `npm run gradcheck [-- --runs N --seed S --filter NAME]`: the gradient check of every registered
 * primitive (and any op a user registers with definePrimitive/defineCompositeCheck) and of the
 * composite ops. Prints op, cases tried, worst relative error and pass/FAIL; exits 1 on any failure.
 * Error = max|g_autograd − g_finite-diff| / max(1, max|g_finite-diff|), float64, central differences, h = 1e-6.
 */
import { parseArgs } from 'node:util';
import * as fc from 'fast-check';
import * as E from '@stochconv/engine';
import { bind } from '../src/autograd/trace.ts';

const { values: args } = parseArgs({
  options: { runs: { type: 'string', default: '25' }, seed: { type: 'string', default: '42' }, filter: { type: 'string' } },
});
const runs = Number(args.runs);
const seed = Number(args.seed);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`gradcheck: --runs must be a positive integer, got '${args.runs}'`);
  process.exit(2);
}

interface Row { op: string; kind: string; cases: number; worst: number; tol: number; ok: boolean; note: string }
const rows: Row[] = [];
const entries = [
  ...E.listPrimitives().filter((p) => p.vjp).map((p) => ({
    name: p.name, kind: 'primitive', check: p.check, tol: p.tolerance ?? E.DEFAULT_TOLERANCE, step: p.step,
    fn: (xs: E.Tensor[], attrs: unknown) => bind(p.name, xs, attrs),
  })),
  ...E.listCompositeChecks().map((c) => ({ name: c.name, kind: 'composite', check: c.check, tol: c.tolerance ?? E.DEFAULT_TOLERANCE, step: c.step, fn: c.fn })),
].filter((e) => !args.filter || e.name.toLowerCase().includes(args.filter.toLowerCase()));

for (const e of entries) {
  if (!e.check) {
    rows.push({ op: e.name, kind: e.kind, cases: 0, worst: NaN, tol: e.tol, ok: false, note: 'no check generator registered' });
    continue;
  }
  let worst = 0;
  let cases = 0;
  let note = '';
  const out = fc.check(
    fc.property(e.check(fc), (c) => {
      cases++;
      const err = E.checkGradients(e.fn, c, { step: e.step }).maxError;
      worst = Math.max(worst, err);
      return err <= e.tol;
    }),
    { numRuns: runs, seed },
  );
  if (out.failed) note = `counterexample: ${fc.stringify(out.counterexample)}${out.errorInstance ? ` (${String(out.errorInstance).split('\n')[0]})` : ''}`;
  rows.push({ op: e.name, kind: e.kind, cases, worst, tol: e.tol, ok: !out.failed, note });
}

const w = Math.max(...rows.map((r) => r.op.length), 2);
console.log(`${'op'.padEnd(w)}  ${'kind'.padEnd(9)}  ${'cases'.padStart(5)}  ${'worst rel. error'.padStart(16)}  ${'tolerance'.padStart(9)}  result`);
for (const r of rows) {
  console.log(`${r.op.padEnd(w)}  ${r.kind.padEnd(9)}  ${String(r.cases).padStart(5)}  ${(Number.isNaN(r.worst) ? '-' : r.worst.toExponential(2)).padStart(16)}  ${r.tol.toExponential(0).padStart(9)}  ${r.ok ? 'pass' : 'FAIL'}${r.note ? `  ${r.note}` : ''}`);
}
const failed = rows.filter((r) => !r.ok).length;
console.log(`\n${rows.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
