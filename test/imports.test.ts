/**
 * Every public module works when it is the only thing a program imports: each one is imported
 * first in a fresh Node process (a new module graph, unlike vitest's per-file isolation), then
 * used. This guards the explicit wiring (the primitive table in src/autograd/registry.ts, the
 * backends in src/backends/backend.ts): nothing may depend on another module having been
 * imported before it.
 *
 * The public modules are src/index.ts and every file it re-exports, followed through the index
 * files, plus the modules listed in EXTRA. A module with a snippet in USES is also exercised; the
 * others are checked to load and export something. Snippets may import src/tensor/tensor.ts and
 * src/tensor/ops.ts (as `T` and `O`) after the module under test: those two register nothing.
 *
 * Internal modules are covered by a rule instead of a process each: the backends' modules import
 * nothing from the layers above them (src/backends/kernel.ts says why).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');

/** Modules not re-exported by src/index.ts that must work alone too. */
const EXTRA = [
  'src/autograd/primitives.ts',
  'src/autograd/conv.ts',
  'src/autograd/composites.ts',
  'src/backends/cpu/index.ts',
  'src/train/run.ts',
  'src/train/restore.ts',
];

/** src/index.ts and the files it re-exports (`export … from './x.ts'`), recursively. */
function publicModules(): string[] {
  const seen = new Set<string>();
  const walk = (rel: string) => {
    if (seen.has(rel)) return;
    seen.add(rel);
    const text = fs.readFileSync(path.join(ROOT, rel), 'utf8');
    for (const m of text.matchAll(/^export [^;]*?from '(\.[^']+)'/gms)) walk(path.posix.join(path.posix.dirname(rel), m[1]));
  };
  walk('src/index.ts');
  return [...seen];
}

const ops = "const x = O.full([2, 2], 3); eq(T.dataSync(O.sum(O.add(O.mul(x, x), 1)))[0], 40);";
const safetensors = `
  const f = path.join(tmp, 'w.safetensors');
  m.saveTree(f, { a: { b: T.tensor([1, 2]) } });
  eq(T.dataSync(m.loadTree(f).tree.a.b)[1], 2);
  eq(m.readTensors(f).right.tensors.has('a.b'), true);`;

/** What to do with each module after importing it (`m`); a thrown error or a failed `eq` fails it. */
const USES: Record<string, string> = {
  'src/index.ts': "eq(T.dataSync(m.grad((x) => m.sum(m.mul(x, x)))(m.tensor([3])))[0], 6); eq(m.getBackend().name, 'cpu');",
  'src/tensor/index.ts': "eq(T.dataSync(m.softmax(m.tensor([0, 0]), -1))[0], 0.5);",
  'src/tensor/ops.ts': ops.replaceAll('O.', 'm.'),
  'src/tensor/tensor.ts': "eq(m.dataSync(m.tensor([1, 2]))[1], 2);",
  'src/tensor/conv.ts':
    "const y = m.conv2d(O.ones([1, 1, 4, 4]), O.ones([1, 1, 3, 3])); eq(y.shape.join(), '1,1,2,2'); eq(T.dataSync(y)[0], 9); eq(T.dataSync(m.maxPool2d(O.ones([1, 1, 2, 2]), { kernel: 2, stride: 2 }))[0], 1);",
  'src/tensor/random.ts': "eq(T.dataSync(m.uniform(m.key(0), [3])).length, 3);",
  'src/tensor/losses.ts': "eq(Math.abs(T.item(m.crossEntropy(O.zeros([1, 2]), [0])) - Math.log(2)) < 1e-6, true);",
  'src/autograd/index.ts': "eq(T.dataSync(m.grad((x) => O.sum(O.exp(x)))(T.tensor([0])))[0], 1); eq(m.listPrimitives().some((p) => p.name === 'conv2d'), true);",
  'src/autograd/transforms.ts': "eq(T.dataSync(m.grad((x) => O.sum(O.tanh(x)))(T.tensor([0])))[0], 1);",
  'src/autograd/trace.ts': "eq(T.dataSync(m.bind('add', [T.tensor([1]), T.tensor([2])], {}))[0], 3);",
  'src/autograd/registry.ts':
    "eq(m.getPrimitive('stochasticConv2d').name, 'stochasticConv2d'); eq(m.listPrimitives().length > 30, true); eq(m.listCompositeChecks().length > 5, true);",
  'src/autograd/gradcheck.ts':
    "const r = m.checkGradients(([x]) => O.sum(O.mul(x, x)), { inputs: [{ shape: [2], values: [1, -2] }] }); eq(r.maxError < 1e-6, true);",
  'src/autograd/primitives.ts': "eq(m.primitives.some((p) => p.name === 'matmul'), true);",
  'src/backends/backend.ts': "eq(m.listBackends().join(), 'cpu,gpu'); eq(m.getBackend().name, 'cpu');",
  'src/backends/cpu/index.ts': "eq(m.cpuBackend.kernels.has('conv2d'), true);",
  'src/backends/gpu/index.ts': "eq(m.gpuBackend.name, 'gpu'); eq(m.gpuBackend.started, false); eq(m.gpuModes.includes('cpu'), true);",
  'src/jit/index.ts': "const f = m.jit((x) => O.add(O.mul(x, 2), 1)); eq(T.dataSync(f(T.tensor([1, 2])))[1], 5);",
  'src/jit/jit.ts': "const f = m.jit((x) => O.relu(x)); eq(T.dataSync(f(T.tensor([-1, 2])))[0], 0);",
  'src/io/index.ts': safetensors,
  'src/io/safetensors.ts': safetensors,
  'src/autograd/pytree.ts': "const [leaves, def] = m.flatten({ b: [T.tensor([1])], a: T.tensor([2]) }); eq(leaves.length, 2); eq(T.dataSync(m.unflatten(def, leaves).b[0])[0], 1);",
  'src/nn/index.ts':
    "const R = await import(pathToFileURL(path.join(ROOT, 'src/tensor/random.ts')).href); const net = m.createNetwork(m.dwsNet(), { key: R.key(0), inputShape: [1, 1, 28, 28] }); eq(m.parameterCount(net.params) > 1000, true);",
  'src/data/loader.ts': `
    const sharp = (await import('sharp')).default;
    const file = path.join(tmp, 'a.png');
    await sharp(Buffer.alloc(8 * 8 * 3, 128), { raw: { width: 8, height: 8, channels: 3 } }).png().toFile(file);
    const loader = m.createLoader([{ path: file, name: 'a', label: 1, source: tmp }], { batchSize: 1, sides: { low: 4, high: null }, augment: false, seed: 0, workers: 0 });
    for await (const b of loader.epoch(0)) eq(b.low.shape.join(), '1,3,4,4');
    await loader.close();`,
  'src/inspect/index.ts': "eq(m.resizeBilinear([1, 1, 1, 1], 2, 2, 4, 4).length, 16);",
  'src/train/classifier.ts': "const opt = m.sgd({ lr: 0.1 }); eq(typeof opt, 'object');",
};

/** The program run in a fresh process for one module. */
function program(rel: string): string {
  const url = (p: string) => JSON.stringify(pathToFileURL(path.join(ROOT, p)).href);
  return `
    import * as path from 'node:path';
    import * as fs from 'node:fs';
    import * as os from 'node:os';
    import { pathToFileURL } from 'node:url';
    const ROOT = ${JSON.stringify(ROOT)};
    const m = await import(${url(rel)});
    const T = await import(${url('src/tensor/tensor.ts')});
    const O = await import(${url('src/tensor/ops.ts')});
    const eq = (a, b) => { if (a !== b) throw new Error('expected ' + JSON.stringify(b) + ', got ' + JSON.stringify(a)); };
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imports-'));
    try {
      if (Object.keys(m).length === 0) throw new Error('exports nothing');
      ${USES[rel] ?? ''}
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    process.exit(0);`;
}

interface Outcome {
  readonly rel: string;
  readonly code: number | null;
  readonly output: string;
}

function runAlone(rel: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program(rel)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ rel, code, output });
    });
  });
}

/** Runs every module in its own process, a few at a time. */
async function runAll(mods: readonly string[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const queue = [...mods];
  const lanes = Math.max(2, os.availableParallelism());
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (let rel = queue.shift(); rel; rel = queue.shift()) out.push(await runAlone(rel));
    }),
  );
  return out;
}

/** The relative modules a file imports at run time (`import type` and `export type` left out). */
function runtimeImports(rel: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, rel), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\s)(?:[^;]*?\sfrom\s+)?'(\.[^']+)'/gms)) out.push(path.posix.join(path.posix.dirname(rel), m[1]));
  return out;
}

const filesUnder = (dir: string): string[] =>
  fs.readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => /\.(ts|mjs)$/.test(f)).map((f) => path.posix.join(dir, f.split(path.sep).join('/')));

describe('the backends import nothing from the layers above them', () => {
  it('finds their imports (the rule cannot pass vacuously)', () => {
    expect(runtimeImports('src/backends/cpu/index.ts')).toContain('src/backends/kernel.ts');
    expect(runtimeImports('src/backends/backend.ts')).toContain('src/backends/cpu/index.ts');
  });

  it('a backend module imports only backend modules other than the registry, and src/tensor/shape.ts', () => {
    const allowed = (target: string) => target === 'src/tensor/shape.ts' || (target.startsWith('src/backends/') && target !== 'src/backends/backend.ts');
    const bad = filesUnder('src/backends')
      .filter((f) => f !== 'src/backends/backend.ts')
      .flatMap((f) => runtimeImports(f).filter((t) => !allowed(t)).map((t) => `${f} imports ${t}`));
    expect(bad).toEqual([]);
  });
});

describe('each public module imported alone, in a fresh process', () => {
  const mods = [...publicModules(), ...EXTRA];

  it('finds the public modules and has a use for the core ones', () => {
    expect(mods.length).toBeGreaterThan(40);
    for (const rel of Object.keys(USES)) expect(mods, `${rel} has a use but is not checked`).toContain(rel);
  });

  it('loads and works', async () => {
    const outcomes = await runAll(mods);
    const failed = outcomes.filter((o) => o.code !== 0).map((o) => `${o.rel} (exit ${o.code}):\n${o.output.trim().split('\n').slice(-6).join('\n')}`);
    expect(failed, failed.join('\n\n')).toEqual([]);
    expect(outcomes).toHaveLength(mods.length);
  }, 900_000);
});
