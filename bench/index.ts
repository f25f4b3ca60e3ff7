/**
 * `npm run bench -- [--json] [--filter TEXT[,TEXT…]] [--suite NAME] [--quick] [--backend cpu|gpu]`
 * (--filter keeps the rows whose suite, name or backend contains any of the comma-separated texts)
 * Runs the registered suites and prints a table (or a JSON array of rows).
 */
import { parseArgs } from 'node:util';
import type { Row, Suite } from './harness.ts';
import { suites } from './suites/index.ts';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    filter: { type: 'string' },
    suite: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    backend: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(`usage: npm run bench -- [--json] [--filter TEXT[,TEXT…] (rows containing any)] [--suite NAME] [--quick] [--backend cpu|gpu (models: ours and tfjs on the gpu)]\nsuites:\n${suites.map((s) => `  ${s.name.padEnd(12)} ${s.description}`).join('\n')}`);
  process.exit(0);
}

const chosen: Suite[] = values.suite?.length ? suites.filter((s) => values.suite!.includes(s.name)) : suites.filter((s) => !('optIn' in s && (s as { optIn?: boolean }).optIn));
if (values.suite?.length && chosen.length !== values.suite.length) {
  const known = suites.map((s) => s.name);
  console.error(`bench: unknown suite ${values.suite.filter((n) => !known.includes(n)).join(', ')} (known: ${known.join(', ')})`);
  process.exit(2);
}

/** Rows timed in turns with a peer's (bench/lockstep.ts) say so, with the median per-pair ratio where they have it. */
const lockstepNote = (r: Row): string =>
  typeof r.pairedWith !== 'string' ? '' : `  in lockstep with ${r.pairedWith}${typeof r.pairedRatio === 'number' ? `: ${r.pairedRatio.toFixed(3)}× per pair` : ''}`;

const rows: Row[] = [];
for (const s of chosen) {
  if (!values.json) console.error(`# suite ${s.name}: ${s.description}`);
  const got = await s.run({ filter: values.filter, quick: values.quick, backend: values.backend });
  rows.push(...got);
  if (!values.json) {
    for (const r of got) console.log(`${`${r.suite}/${r.name}`.padEnd(44)} ${r.backend.padEnd(10)} ${r.pass.padEnd(17)} ${r.medianMs.toFixed(2).padStart(10)} ms${lockstepNote(r)}`);
  }
}
if (values.json) console.log(JSON.stringify(rows, null, 2));
