/**
 * The training CLI end to end on a few generated images and tiny models (width and depth ×0.25,
 * 32 + 64 px): outputs of a one-input and a two-input run, resume equivalence (in-process stop
 * mid-epoch, and SIGINT to a child process), a NaN run, and usage errors with exit code 2.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { ensureSynthetic } from '../../src/data/synthetic.ts';
import { main as trainMain } from '../../src/train/cli.ts';
import { main as evaluateMain } from '../../src/train/evaluate.ts';
import { main as predictMain } from '../../src/train/predict.ts';
import { resolveConfig } from '../../src/train/config.ts';
import { checkModel, modelSpecFor, train } from '../../src/train/run.ts';
import { memoryReporter } from '../../src/train/report.ts';
import { baselineIntro } from '../../src/train/baseline.ts';
import { runCli } from '../helpers/cli.ts';

const root = path.resolve(__dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'train-cli-'));
let data = '';

beforeAll(async () => {
  const r = await ensureSynthetic({ dir: path.join(tmp, 'data'), count: 12, size: 64, seed: 3 })();
  if (E.isLeft(r)) throw new Error(JSON.stringify(r.left));
  data = r.right;
}, 60_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const tiny = (model: string, out: string, extra: string[] = []) => [
  '--data', data, '--model', model, '--img-size', '32', '--hr-size', '64', '--width-mult', '0.25', '--depth-mult', '0.25',
  '--epochs', '2', '--batch-size', '4', '--micro-batch', '2', '--workers', '0', '--quiet', '--out', out, ...extra,
];


const read = (f: string) => fs.readFileSync(f, 'utf8');

describe('npm run train: tiny end-to-end runs', () => {
  it('a two-input model (b0-full-split) writes every output', async () => {
    const out = path.join(tmp, 'split');
    const r = await runCli(trainMain, tiny('b0-full-split', out, ['--tta', '2']));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/done: validation AUC \d\.\d{4} at the last epoch, best \d\.\d{4} at epoch \d/);
    for (const f of ['per_epoch.csv', 'per_batch.csv', 'timing.csv', 'config.json', 'split.csv', 'predictions.csv', 'loss.png', 'auc.png', 'roc.png']) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    }
    for (const d of ['last', 'best']) {
      for (const f of ['weights.safetensors', 'bn_state.safetensors', 'optimizer.safetensors', 'trainer.json']) expect(fs.existsSync(path.join(out, d, f))).toBe(true);
    }
    const pe = read(path.join(out, 'per_epoch.csv')).trim().split('\n');
    expect(pe[0].startsWith('Epoch,Train Loss,Val Loss,Train RoC,Val RoC,')).toBe(true);
    expect(pe[0].endsWith(',LR')).toBe(true);
    expect(pe).toHaveLength(3);
    const pb = read(path.join(out, 'per_batch.csv')).trim().split('\n');
    expect(pb[0]).toBe('Batch,Train Loss');
    expect(pb).toHaveLength(1 + 2 * 3); // 10 training images, batch 4 → 3 steps per epoch
    const cfg = JSON.parse(read(path.join(out, 'config.json')));
    expect(cfg.config.model).toBe('b0-full-split');
    expect(cfg.config.tta).toBe(2);
    expect(cfg.seed).toBe(1337);
    expect(cfg.backend.name).toBe('cpu');
    expect(cfg.versions.node).toBe(process.version);
    expect(cfg.data.train + cfg.data.val).toBe(12);
    const preds = read(path.join(out, 'predictions.csv')).trim().split('\n');
    expect(preds[0]).toBe('image_name,label,prob');
    expect(preds).toHaveLength(1 + cfg.data.val);
    // PNGs are real images.
    expect(fs.readFileSync(path.join(out, 'roc.png')).subarray(1, 4).toString()).toBe('PNG');
  });

  it('a one-input model (b0), then evaluate and predict on its checkpoint', async () => {
    const out = path.join(tmp, 'plain');
    const r = await runCli(trainMain, tiny('b0', out, ['--optimizer', 'adamw', '--schedule', 'cosine', '--clip', '1']));
    expect(r.code).toBe(0);
    expect(JSON.parse(read(path.join(out, 'config.json'))).model.config.sides.high).toBeNull();
    const ev = await runCli(evaluateMain, ['--checkpoint', out, '--data', data, '--workers', '0', '--quiet', '--out', path.join(tmp, 'eval')]);
    expect(ev.code).toBe(0);
    expect(ev.out).toMatch(/ROC AUC \d\.\d{4}/);
    expect(fs.existsSync(path.join(tmp, 'eval', 'roc.png'))).toBe(true);
    const metrics = JSON.parse(read(path.join(tmp, 'eval', 'metrics.json')));
    expect(metrics.metrics.n).toBe(12);
    const img = path.join(data, 'images', 'syn_00000.png');
    const pr = await runCli(predictMain, ['--checkpoint', out, img]);
    expect(pr.code).toBe(0);
    expect(pr.out).toMatch(/^image_name,prob\nsyn_00000,0\.\d+/);
  });
});

describe('a run with a same-budget baseline (--baseline)', () => {
  it('says what it compares and where, trains both, ends with both AUCs; resuming finishes what is unfinished', async () => {
    const out = path.join(tmp, 'with-baseline');
    const r = await runCli(trainMain, tiny('b0-full-split', out, ['--baseline', 'b0', '--epochs', '1']));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toBe('This run trains b0-full-split, then the baseline b0 on the same data, split, epochs and optimizer, and compares their validation AUC.');
    expect(lines[1]).toBe(`run folder: ${out} (the baseline in ${path.join(out, 'baseline-b0')})`);
    const result = /^result: validation AUC (\d\.\d{4}) for b0-full-split vs (\d\.\d{4}) for the baseline b0 at the last epoch \(best \d\.\d{4} vs \d\.\d{4}\), same data, split and training budget$/;
    expect(lines.at(-1)).toMatch(result);
    const base = path.join(out, 'baseline-b0');
    const cfg = JSON.parse(read(path.join(base, 'config.json')));
    expect([cfg.config.model, cfg.config.baseline, cfg.config.epochs, cfg.config.seed, cfg.config.widthMult]).toEqual(['b0', null, 1, 1337, 0.25]);
    expect(read(path.join(base, 'split.csv'))).toBe(read(path.join(out, 'split.csv')));
    // The quoted AUCs are the last rows of the two per_epoch.csv files.
    const lastAuc = (d: string) => Number(read(path.join(d, 'per_epoch.csv')).trim().split('\n').at(-1)!.split(',')[4]).toFixed(4);
    expect(lines.at(-1)!.match(result)!.slice(1, 3)).toEqual([lastAuc(out), lastAuc(base)]);

    // One more epoch for both, then a resume with nothing left to do only reads the results back.
    const more = await runCli(trainMain, ['--resume', out, '--epochs', '2', '--quiet']);
    expect(more.code).toBe(0);
    for (const d of [out, base]) expect(read(path.join(d, 'per_epoch.csv')).trim().split('\n')).toHaveLength(3);
    const again = await runCli(trainMain, ['--resume', out, '--epochs', '2', '--quiet']);
    expect(again.code).toBe(0);
    expect(again.out).toMatch(/b0-full-split: already trained for 2 epochs/);
    expect(again.out).toMatch(/b0: already trained for 2 epochs/);
    expect(again.out.trim().split('\n').at(-1)).toBe(more.out.trim().split('\n').at(-1));
  });

  it('an unknown baseline model is a usage error before any training', async () => {
    const r = await runCli(trainMain, tiny('b0-full-split', path.join(tmp, 'bad-baseline'), ['--baseline', 'b9-turbo']));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--baseline: unknown model 'b9-turbo'/);
    expect(fs.existsSync(path.join(tmp, 'bad-baseline'))).toBe(false);
  });

  it('the default run (no arguments) compares b0-full-split with the low-res b0 and says so first', () => {
    const d = resolveConfig({});
    if (E.isLeft(d)) throw new Error(d.left.message);
    expect([d.right.model, d.right.baseline]).toEqual(['b0-full-split', 'b0']);
    const intro = baselineIntro(d.right, '/x');
    expect(intro[0]).toMatch(/^This run shows the paper's thesis on the built-in synthetic set/);
    expect(intro[1]).toMatch(new RegExp(`the baseline b0, which sees only the ${d.right.imgSize}-px view`));
    expect(intro[2]).toBe('run folder: /x (the baseline in /x/baseline-b0)');
    // Only a low-res baseline gets the thesis wording.
    expect(baselineIntro({ ...d.right, baseline: 'b0-pure-stochastic' }, '/x')[0]).toMatch(/^This run trains b0-full-split, then the baseline b0-pure-stochastic/);
    // Choosing a model, or --baseline none, turns the comparison off.
    for (const c of [resolveConfig({ model: 'b0' }), resolveConfig({ baseline: null }), resolveConfig({ data: ['d'] })]) expect(E.isRight(c) && c.right.baseline).toBeNull();
  });
});

describe('model sizes from the flags', () => {
  it("--img-size sets a pure-stochastic model's backbone resolution to the low-res stem's output", () => {
    const size = (imgSize: number | null, hrSize: number | null) => {
      const c = resolveConfig({ model: 'b0-pure-stochastic', imgSize, hrSize });
      if (E.isLeft(c)) throw new Error(c.left.message);
      const m = checkModel(modelSpecFor(c.right, 1));
      if (E.isLeft(m)) throw new Error(m.left.message);
      return [m.right.stochOutSize, m.right.sides.high];
    };
    expect(size(32, 256)).toEqual([16, 256]); // the synthetic set's 32 px: b0's stem output, 16 × 16
    expect(size(224, 1024)).toEqual([112, 1024]); // the paper's sizes
    const paper = resolveConfig({ model: 'b0-pure-stochastic', preset: 'paper', data: ['d'] });
    expect(E.isRight(paper) && checkModel(modelSpecFor(paper.right, 1))).toMatchObject({ right: { stochOutSize: 112 } });
  });
});

describe('other tasks and stopping rules', () => {
  it('multiclass from class folders: macro AUC, balanced accuracy and per-class AUC columns', async () => {
    const mc = path.join(tmp, 'mc');
    const imgs = fs.readdirSync(path.join(data, 'images')).sort();
    ['akiec', 'mel', 'nv'].forEach((c, k) => {
      fs.mkdirSync(path.join(mc, c), { recursive: true });
      for (const f of imgs.slice(4 * k, 4 * k + 4)) fs.copyFileSync(path.join(data, 'images', f), path.join(mc, c, f));
    });
    const out = path.join(tmp, 'mc-run');
    const r = await runCli(trainMain, [...tiny('b0', out, ['--task', 'multiclass', '--epochs', '1', '--pos-weight', 'auto']).map((a) => (a === data ? mc : a))]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const header = read(path.join(out, 'per_epoch.csv')).split('\n')[0];
    expect(header).toBe('Epoch,Train Loss,Val Loss,Train RoC,Val RoC,Val Accuracy,Val Balanced Accuracy,Val Kappa,Val RoC akiec,Val RoC mel,Val RoC nv,LR');
    expect(read(path.join(out, 'predictions.csv')).split('\n')[0]).toBe('image_name,label,pred,prob_akiec,prob_mel,prob_nv');
  });

  it('--patience stops when the validation AUC stops improving', async () => {
    const out = path.join(tmp, 'patience');
    // A learning rate too small to move float32 weights: the validation AUC cannot improve. (A
    // zero-initialised head would move: 1e-12 is representable next to 0, and it breaks the ties of
    // the all-zero first-epoch logits, so the AUC could change by chance.)
    const r = await runCli(trainMain, tiny('b0', out, ['--lr', '1e-12', '--bn-momentum', '1e-9', '--patience', '1', '--epochs', '4', '--head-init', 'efficientnet']));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/early stopping: no better validation AUC for 1 epochs/);
    expect(read(path.join(out, 'per_epoch.csv')).trim().split('\n')).toHaveLength(3);
  });
});

describe('resume', () => {
  it('a run stopped mid-epoch and resumed writes the same per_epoch.csv and per_batch.csv', async () => {
    const ref = path.join(tmp, 'split'); // the uninterrupted two-input run above
    const out = path.join(tmp, 'resumed');
    const cfg = resolveConfig({
      data: [data], model: 'b0-full-split', imgSize: 32, hrSize: 64, widthMult: 0.25, depthMult: 0.25,
      epochs: 2, batchSize: 4, microBatch: 2, workers: 0, quiet: true, out, tta: 2,
    });
    if (E.isLeft(cfg)) throw new Error(cfg.left.message);
    // Stop after the 4th step: epoch 2, batch 1 done.
    let steps = 0;
    const rep = memoryReporter();
    const r = await train(cfg.right, {
      reporter: { ...rep, update: (d, l) => void (l !== null && d > 0 && steps++) },
      stopRequested: () => steps >= 4,
      explicit: new Set(),
      argv: [],
    });
    expect(E.isRight(r) && r.right.outcome.kind).toBe('interrupted');
    const t = JSON.parse(read(path.join(out, 'last', 'trainer.json')));
    expect([t.epoch, t.stepInEpoch, t.globalStep]).toEqual([1, 1, 4]);
    expect(t.partial.count).toBe(4);
    const res = await runCli(trainMain, ['--resume', out, '--quiet']);
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    expect(read(path.join(out, 'per_epoch.csv'))).toBe(read(path.join(ref, 'per_epoch.csv')));
    expect(read(path.join(out, 'per_batch.csv'))).toBe(read(path.join(ref, 'per_batch.csv')));
    expect(read(path.join(out, 'predictions.csv'))).toBe(read(path.join(ref, 'predictions.csv')));
  });

  it('SIGINT to a training process saves a resumable checkpoint; the resumed run matches', async () => {
    const out = path.join(tmp, 'sigint');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/train/cli.ts', ...tiny('b0-full-split', out, ['--tta', '2'])], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const batches = path.join(out, 'per_batch.csv');
    // Interrupt once the first step is logged.
    const timer = setInterval(() => {
      if (fs.existsSync(batches) && read(batches).trim().split('\n').length >= 2) {
        clearInterval(timer);
        child.kill('SIGINT');
      }
    }, 50);
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    clearInterval(timer);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(code, stdout + stderr).toBe(130);
    expect(stdout).toMatch(/interrupted at epoch \d, batch \d+: resumable checkpoint saved/);
    const t = JSON.parse(read(path.join(out, 'last', 'trainer.json')));
    expect(t.globalStep).toBeGreaterThanOrEqual(1);
    const res = await runCli(trainMain, ['--resume', out, '--quiet']);
    expect(res.code).toBe(0);
    expect(read(path.join(out, 'per_epoch.csv'))).toBe(read(path.join(tmp, 'split', 'per_epoch.csv')));
  }, 120_000);

  it('refuses to change the recipe on resume, and to reuse a run folder', async () => {
    const out = path.join(tmp, 'split');
    const a = await runCli(trainMain, ['--resume', out, '--lr', '0.5']);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--lr cannot be changed when resuming/);
    const b = await runCli(trainMain, tiny('b0-full-split', out));
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/already holds a run/);
  });
});

describe('a diverging run', () => {
  it('stops at a NaN or infinite loss with a clear message and exit code 1', async () => {
    const out = path.join(tmp, 'nan');
    const r = await runCli(trainMain, tiny('b0', out, ['--lr', '1e30', '--optimizer', 'sgd', '--epochs', '3']));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/the loss became (NaN|infinite) at epoch \d, batch \d+; stopped/);
  });
});

describe('usage errors: one line, exit code 2, no stack trace', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown flag', ['--bogus'], /unknown option '--bogus'/],
    ['unknown model', ['--model', 'b9-turbo', '--data', '.'], /unknown model 'b9-turbo'/],
    ['missing data', ['--data', '/nonexistent/isic'], /folder not found: \/nonexistent\/isic/],
    ['invalid number', ['--epochs', 'three'], /invalid value 'three' for --epochs: must be an integer ≥ 1/],
    ['invalid choice', ['--optimizer', 'lion'], /invalid value 'lion' for --optimizer: must be one of rmsprop, adam, adamw, sgd/],
    ['negative lr', ['--lr', '-1'], /invalid value '-1' for --lr/],
    ['incompatible loss', ['--loss', 'ce'], /--loss ce needs --task multiclass/],
    ['missing config file', ['--config', '/nonexistent.json'], /config file not found/],
  ];
  for (const [name, args, msg] of cases) {
    it(name, async () => {
      const r = await runCli(trainMain, args);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split('\n')).toHaveLength(1);
    });
  }

  it('through the real entry point (node --import tsx): exit status 2', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/train/cli.ts', '--model', 'nope', '--bogus-flag'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown option '--bogus-flag'/);
    const p = spawnSync(process.execPath, ['--import', 'tsx', 'src/train/predict.ts', '--checkpoint', tmp, '/nonexistent.png'], { cwd: root, encoding: 'utf8' });
    expect(p.status).toBe(2);
    expect(p.stderr).toMatch(/image not found: \/nonexistent.png/);
  });

  it('config file: unknown key and bad value are named; flags override the file', () => {
    const f = path.join(tmp, 'cfg.json');
    fs.writeFileSync(f, JSON.stringify({ 'learning-rate': 1 }));
    const a = resolveConfig({ config: f });
    expect(E.isLeft(a) && a.left.message).toMatch(/unknown key 'learning-rate' in config file/);
    fs.writeFileSync(f, JSON.stringify({ epochs: 0 }));
    const b = resolveConfig({ config: f });
    expect(E.isLeft(b) && b.left.message).toMatch(/invalid value '0' for --epochs in config file/);
    fs.writeFileSync(f, JSON.stringify({ lr: 0.01, 'batch-size': 7, data: ['a', 'b'], preset: 'paper' }));
    const c = resolveConfig({ config: f, lr: 0.5 });
    if (E.isLeft(c)) throw new Error(c.left.message);
    expect(c.right.lr).toBe(0.5);
    expect(c.right.batchSize).toBe(7);
    expect(c.right.data).toEqual(['a', 'b']);
    // The preset fills the rest.
    expect([c.right.epochs, c.right.imgSize, c.right.hrSize, c.right.warmupEpochs, c.right.decay, c.right.alpha, c.right.eps]).toEqual([60, 224, 1024, 15, 0.9, 0.99, 1e-8]);
  });
});
