/** The models bench's lockstep runs (bench/lockstep.ts), with fake peer processes that print given times. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { type PeerSpec, lockstep } from '../../bench/lockstep.ts';
import { median } from '../../bench/harness.ts';

const fake = fileURLToPath(new URL('../fixtures/bench/lockstep-peer.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'lockstep-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let logs = 0;

/** Two fake peers sharing a fresh event log. */
function peers(a: { ms: number[]; flags?: string[] }, b: { ms: number[]; flags?: string[] }) {
  const log = join(dir, `log-${logs++}`);
  const spec = (name: string, p: { ms: number[]; flags?: string[] }): PeerSpec => ({
    name, command: process.execPath, args: [fake, name, log, p.ms.join(','), ...(p.flags ?? [])],
  });
  /** The log's events, in order of their time stamps: [name, event, ms]. */
  const events = () => readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ')).map(([n, e, t]) => [n, e, Number(t)] as const).sort((x, y) => x[2] - y[2]);
  return { a: spec('ours', a), b: spec('peer', b), events };
}

describe('bench lockstep', () => {
  it('alternates single reps after both are ready, and reports the median of the per-pair ratios', async () => {
    // Ratios 2, 4, 3, 1, 2: their median is 2, while the ratio of the medians (30 / 10) is 3.
    const { a, b, events } = peers({ ms: [10, 20, 30, 40, 50] }, { ms: [5, 5, 10, 40, 25] });
    const { rows, ratios } = await lockstep(a, b, { reps: 5, timeoutMs: 60_000 });
    expect(events().map(([n, e]) => `${n} ${e}`)).toEqual([
      'ours ready', 'peer ready',
      ...Array.from({ length: 5 }, () => ['ours rep', 'peer rep']).flat(),
      'ours end', 'peer end',
    ]);
    expect(ratios).toEqual([2, 4, 3, 1, 2]);
    const [ours, peer] = rows as Record<string, any>[];
    expect(ours).toMatchObject({ medianMs: 30, samples: 5, peakRssMb: 1, pairedWith: 'peer', pairedRatio: 2, pairRatios: [2, 4, 3, 1, 2] });
    expect(ours.lockstep.repMs).toEqual([10, 20, 30, 40, 50]);
    expect(peer).toMatchObject({ medianMs: 10, samples: 5, pairedWith: 'ours' });
    expect(peer.pairedRatio).toBeUndefined();
  });

  it('lets the other peer finish its reps alone when one fails, with the failing one reporting its error', async () => {
    const mid = peers({ ms: [1, 2, 3, 4] }, { ms: [1, 1, 1, 1], flags: ['--fail-at=2'] });
    const r = await lockstep(mid.a, mid.b, { reps: 4, timeoutMs: 60_000 });
    expect(r.rows[1]).toEqual({ error: expect.stringContaining('fake failure at rep 2') });
    expect(r.rows[0]).toMatchObject({ samples: 4, medianMs: 3 });
    for (const key of ['pairedRatio', 'pairedWith', 'lockstep']) expect(r.rows[0]).not.toHaveProperty(key);
    expect(r.ratios).toEqual([]);

    const early = peers({ ms: [1, 1], flags: ['--fail-before-ready'] }, { ms: [7, 9] });
    const e = await lockstep(early.a, early.b, { reps: 2, timeoutMs: 60_000 });
    expect(e.rows[0]).toEqual({ error: expect.stringContaining('fake failure before ready') });
    expect(e.rows[1]).toMatchObject({ samples: 2, medianMs: 9 });
  });

  const proc = existsSync('/proc/self/task');
  it.skipIf(!proc)(`waits for a peer that keeps a core busy after its turn before timing the other${proc ? '' : ' (skipped: no /proc to read threads\' CPU time from; off Linux the wait is a fixed pause)'}`, async () => {
    const { a, b, events } = peers({ ms: [5, 5, 5], flags: ['--spin-after=150'] }, { ms: [100, 100, 100] });
    const { rows } = await lockstep(a, b, { reps: 3, timeoutMs: 60_000 });
    const ev = events();
    const quiet = ev.filter(([n, e]) => n === 'ours' && e === 'quiet').map(([, , t]) => t);
    const peerReps = ev.filter(([n, e]) => n === 'peer' && e === 'rep').map(([, , t]) => t);
    for (let k = 0; k < 3; k++) expect(peerReps[k]).toBeGreaterThanOrEqual(quiet[k]);
    const ours = (rows[0] as Record<string, any>).lockstep;
    expect(ours.settleMs).toBeGreaterThanOrEqual(100);
    expect(ours.waitingCpuMs).toBeLessThan(20);

    // Without the wait, the spinning peer runs during the other's reps and its waitingCpuMs shows it.
    const now = peers({ ms: [5, 5, 5], flags: ['--spin-after=150'] }, { ms: [100, 100, 100] });
    const r = await lockstep(now.a, now.b, { reps: 3, timeoutMs: 60_000, settle: async () => ({ waitedMs: 0, cpuMs: 0 }) });
    expect((r.rows[0] as Record<string, any>).lockstep.waitingCpuMs).toBeGreaterThan(20);
  });

  it('takes the mean of the middle two as the median of an even count', () => {
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([3, 1, 2])).toBe(2);
  });
});
