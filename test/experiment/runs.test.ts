/**
 * Experiments end to end with tiny runs (b0 at width and depth ×0.25, 32 px, 12 generated images):
 * the local executor (a failed run is recorded and the others go on; a restart skips complete
 * runs), and the BullMQ path with a real redis-server and two worker processes, one killed mid-run:
 * every run completes, none is started twice, the killed one resumes from its checkpoint.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { ensureSynthetic } from '../../src/data/synthetic.ts';
import { main as experimentMain } from '../../src/experiment/cli.ts';
import { readEpochTable } from '../../src/compare/epochs.ts';
import type { ExperimentLogFile } from '../../src/experiment/log.ts';
import { runCli } from '../helpers/cli.ts';

const root = path.resolve(__dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'experiment-'));
let data = '';
const children: ChildProcess[] = [];

beforeAll(async () => {
  const r = await ensureSynthetic({ dir: path.join(tmp, 'data'), count: 12, size: 64, seed: 3 })();
  if (E.isLeft(r)) throw new Error(JSON.stringify(r.left));
  data = r.right;
}, 60_000);
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

const tiny = (epochs: number) => ({
  data: [data], model: 'b0', imgSize: 32, widthMult: 0.25, depthMult: 0.25, epochs, batchSize: 4, microBatch: 2, workers: 0,
});

const run = (args: string[]) => runCli(experimentMain, args);

const readLog = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'experiment.json'), 'utf8')) as ExperimentLogFile;
const column = (dir: string, file: string, i = 0) => fs.readFileSync(path.join(dir, file), 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[i]));

describe('npm run experiment: local runs', () => {
  it('a failed run is recorded with its error and the others go on; a restart skips complete runs', async () => {
    const file = path.join(tmp, 'local.json');
    // SGD at lr 1e30 diverges at its first step; the trainer exits 1 with a message.
    fs.writeFileSync(file, JSON.stringify({ name: 'local', base: { ...tiny(1), optimizer: 'sgd' }, grid: { lr: [1e30, 0.01] } }));
    const out = path.join(tmp, 'local');
    const a = await run([file, '--out', out]);
    expect(a.code, a.out + a.err).toBe(1);
    expect(a.out).toMatch(/lr-1e\+30: FAILED: train: the loss became (NaN|infinite) at epoch 1, batch \d+/);
    expect(a.out).toMatch(/lr-0\.01: complete in \d+ s; best val AUC \d\.\d{4} at epoch 1/);
    let log = readLog(out);
    expect(log.counts).toMatchObject({ complete: 1, failed: 1 });
    const [bad, good] = log.runs;
    expect(bad).toMatchObject({ name: 'lr-1e+30', status: 'failed', attempts: 1, metrics: null });
    expect(bad.error).toMatch(/the loss became/);
    expect(good).toMatchObject({ name: 'lr-0.01', status: 'complete', attempts: 1, error: null, metrics: { epochs: 1, bestEpoch: 1 } });
    expect(good.seconds).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(out, 'lr-0.01', 'best', 'trainer.json'))).toBe(true);

    const b = await run([file, '--out', out]);
    expect(b.code).toBe(1);
    expect(b.out).toMatch(/1 complete, 1 to run/);
    expect(b.out).not.toMatch(/lr-0\.01: complete in/);
    log = readLog(out);
    expect(log.runs.map((r) => [r.name, r.status, r.attempts])).toEqual([['lr-1e+30', 'failed', 2], ['lr-0.01', 'complete', 1]]);
    expect(log.runs[1].seconds).toBe(good.seconds);
  }, 240_000);

  it('refuses to reuse a run folder for a changed config', async () => {
    const file = path.join(tmp, 'changed.json');
    fs.writeFileSync(file, JSON.stringify({ name: 'local', base: { ...tiny(1), optimizer: 'sgd', momentum: 0.5 }, grid: { lr: [0.01] } }));
    const r = await run([file, '--out', path.join(tmp, 'local')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^experiment: run lr-0\.01 was started with momentum unset, the experiment now says 0\.5 \(remove .* or use another --out\)/);
  });
});

describe('npm run experiment: usage errors (exit 2, one line)', () => {
  const cases: [string, string[], RegExp][] = [
    ['no file', [], /missing the experiment file \(or --preset NAME\)/],
    ['file and preset', ['x.json', '--preset', 'isic-sample'], /give an experiment file or --preset, not both/],
    ['unknown preset', ['--preset', 'paper'], /unknown preset 'paper' \(committed presets: isic-sample, thesis-synthetic\)/],
    ['missing file', ['/nonexistent/grid.json'], /experiment file not found: \/nonexistent\/grid\.json/],
    ['bad --parallel', ['--preset', 'isic-sample', '--parallel', '0'], /invalid value '0' for --parallel/],
    ['not a Redis URL', ['--preset', 'isic-sample', '--queue', 'localhost:6379'], /--queue: 'localhost:6379' must start with redis:\/\//],
  ];
  for (const [name, args, msg] of cases) {
    it(name, async () => {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split('\n')).toHaveLength(1);
    });
  }

  it('an unreachable Redis is named before anything is queued', async () => {
    const port = await freePort();
    const r = await run(['--preset', 'isic-sample', '--out', path.join(tmp, 'unreachable'), '--queue', `redis://:secret@127.0.0.1:${port}`]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`--queue: cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
    expect(r.out + r.err).not.toMatch(/secret/);
  });
});

const redis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!redis)(`npm run experiment --queue with npm run worker${redis ? '' : ' (skipped: redis-server is not installed; apt-get install redis-server)'}`, () => {
  it('two workers, one killed mid-run: every run completes, none twice, the killed run resumes', async () => {
    const port = await freePort();
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    children.push(server);
    await new Promise((r) => setTimeout(r, 300));
    const url = `redis://127.0.0.1:${port}`;
    const file = path.join(tmp, 'queue.json');
    fs.writeFileSync(file, JSON.stringify({ name: 'queued', base: tiny(3), grid: { seed: [1, 2, 3] } }));
    const out = path.join(tmp, 'queued');
    const worker = (name: string) => {
      const w = spawn(process.execPath, ['--import', 'tsx', 'src/experiment/worker.ts', '--queue', url, '--lock-seconds', '2'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      w.stdout!.on('data', (d) => (text += d));
      w.stderr!.on('data', (d) => (text += d));
      children.push(w);
      return { w, name, text: () => text };
    };
    const experiment = run([file, '--out', out, '--queue', url]);
    const a = worker('a');
    // Kill worker a once a run it is training has a checkpoint but is not finished.
    const mine = () =>
      fs.existsSync(out) ? fs.readdirSync(out).filter((d) => {
        const log = path.join(out, d, 'train.log');
        return fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes(`:${a.w.pid}: `);
      }) : [];
    let killed = '';
    await waitFor('a checkpoint of a run on worker a', () => {
      for (const d of mine()) {
        const t = path.join(out, d, 'last', 'trainer.json');
        if (fs.existsSync(t) && JSON.parse(fs.readFileSync(t, 'utf8')).epoch < 3) killed = d;
      }
      return killed !== '';
    }, 150_000);
    a.w.kill('SIGKILL');
    const b = worker('b');
    const r = await experiment;
    expect(r.code, `${r.out}\n--- a:\n${a.text()}\n--- b:\n${b.text()}`).toBe(0);
    b.w.kill('SIGTERM');
    server.kill('SIGTERM');

    const log = readLog(out);
    expect(log.counts.complete).toBe(3);
    for (const run of log.runs) {
      const dir = path.join(out, run.name);
      // Every epoch and every step exactly once.
      expect(column(dir, 'per_epoch.csv'), run.name).toEqual([1, 2, 3]);
      expect(column(dir, 'per_batch.csv'), run.name).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      // Started from scratch exactly once; any further start was a resume.
      const starts = fs.readFileSync(path.join(dir, 'train.log'), 'utf8').split('\n').filter((l) => l.startsWith('# '));
      expect(starts.filter((l) => l.includes('--config')), run.name).toHaveLength(1);
      expect(E.isRight(readEpochTable(path.join(dir, 'per_epoch.csv')))).toBe(true);
    }
    const k = log.runs.find((x) => x.name === killed)!;
    expect(k.resumedFrom!.epoch).toBeGreaterThanOrEqual(1);
    expect(k.attempts).toBeGreaterThanOrEqual(2);
    expect(fs.readFileSync(path.join(out, killed, 'train.log'), 'utf8')).toMatch(new RegExp(`:${b.w.pid}: npm run train -- --resume`));
  }, 300_000);
});
