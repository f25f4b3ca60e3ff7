import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { pipe } from 'fp-ts/lib/function.js';
import { dataSync, tensor, io } from '../../src/index.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-test-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A file laid out byte by byte as Python's safetensors writes it. */
function pythonLayout(header: object, data: Uint8Array): Uint8Array {
  let json = Buffer.from(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  const tree = {
    stem: { w: tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]), b: tensor(new Float64Array([0.1, -2.5]), [2]) },
    blocks: [{ w: tensor(new Float32Array([7]), [1, 1]) }, { w: tensor(new Float32Array([]), [0, 3]) }],
    steps: new io.Int64Array([2], BigInt64Array.from([1n, 2n ** 62n])),
    scalar: tensor(new Float32Array([3.5]), []),
  };

  it('round-trips a nested tree with F32, F64 and I64 and metadata', () => {
    const f = path.join(dir, 'a.safetensors');
    io.saveTree(f, tree, { format: 'pt', epoch: '3' });
    const { tree: back, metadata } = io.loadTree(f) as any;
    expect(back.stem.w.shape).toEqual([2, 3]);
    expect(back.stem.w.dtype).toBe('float32');
    expect([...dataSync(back.stem.w)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(back.stem.b.dtype).toBe('float64');
    expect([...dataSync(back.stem.b)]).toEqual([0.1, -2.5]);
    expect(Array.isArray(back.blocks)).toBe(true);
    expect([...dataSync(back.blocks[0].w)]).toEqual([7]);
    expect(back.blocks[1].w.shape).toEqual([0, 3]);
    expect(back.steps).toBeInstanceOf(io.Int64Array);
    expect([...back.steps.data]).toEqual([1n, 2n ** 62n]);
    expect(back.scalar.shape).toEqual([]);
    expect(metadata).toEqual({ format: 'pt', epoch: '3' });
    expect(pipe(io.readTensors(f), E.map((r) => r.metadata))).toEqual(E.right({ format: 'pt', epoch: '3' }));
    // No temporary file is left behind.
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('writes the Python layout: LE u64 header length, padded JSON header, names sorted, offsets contiguous', () => {
    const f = path.join(dir, 'b.safetensors');
    io.saveTree(f, { b: tensor(new Float32Array([1, 2]), [2]), a: tensor(new Float64Array([3]), [1, 1]) }, { k: 'v' });
    const bytes = fs.readFileSync(f);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    expect(header).toEqual({
      __metadata__: { k: 'v' },
      a: { dtype: 'F64', shape: [1, 1], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
    });
    expect(bytes.readDoubleLE(8 + n)).toBe(3);
    expect(bytes.readFloatLE(8 + n + 8)).toBe(1);
    expect(bytes.length).toBe(8 + n + 16);
  });

  it('reads a file in the layout Python writes (torch-style dotted names become nested records/arrays)', () => {
    const data = new Uint8Array(4 * 3 + 8);
    const dv = new DataView(data.buffer);
    [0.5, 1.5, -2].forEach((v, i) => dv.setFloat32(i * 4, v, true));
    dv.setBigInt64(12, 42n, true);
    const bytes = pythonLayout(
      {
        'features.0.1.weight': { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
        'features.0.1.num_batches_tracked': { dtype: 'I64', shape: [], data_offsets: [12, 20] },
      },
      data,
    );
    const f = path.join(dir, 'py.safetensors');
    fs.writeFileSync(f, bytes);
    const t = io.loadTree(f).tree as any;
    expect([...dataSync(t.features[0][1].weight)]).toEqual([0.5, 1.5, -2]);
    expect(t.features[0][1].num_batches_tracked.data[0]).toBe(42n);
  });

  const corrupt = (name: string, bytes: Uint8Array, msg: RegExp) =>
    it(`rejects ${name} with an error naming the file`, () => {
      const f = path.join(dir, `${name.replace(/\W+/g, '_')}.safetensors`);
      fs.writeFileSync(f, bytes);
      const r = io.readTensors(f);
      expect(E.isLeft(r)).toBe(true);
      if (E.isLeft(r)) {
        expect(r.left._tag).toBe('SafetensorsFormatError');
        expect(r.left.file).toBe(f);
        expect(r.left.message).toMatch(msg);
      }
      expect(() => io.loadTree(f)).toThrow(f);
    });

  const good = (() => {
    const f = path.join(dir, 'good.safetensors');
    io.saveTree(f, tree);
    return new Uint8Array(fs.readFileSync(f));
  })();
  corrupt('a file shorter than 8 bytes', good.subarray(0, 5), /truncated/);
  corrupt('a truncated header', good.subarray(0, 20), /truncated/);
  corrupt('truncated data', good.subarray(0, good.length - 3), /truncated/);
  corrupt('trailing bytes', new Uint8Array([...good, 0, 0, 0, 0]), /trailing/);
  corrupt(
    'a header that is not JSON',
    (() => {
      const b = good.slice();
      b[9] = 0x7b; // '{{'
      return b;
    })(),
    /not valid UTF-8 JSON/,
  );
  corrupt('an absurd header length', (() => {
    const b = good.slice();
    new DataView(b.buffer).setBigUint64(0, 2n ** 60n, true);
    return b;
  })(), /implausible/);
  corrupt('an unsupported dtype', pythonLayout({ x: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, new Uint8Array(2)), /dtype "F16"/);
  corrupt('offsets that do not match the shape', pythonLayout({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)), /needs 8 bytes/);
  corrupt(
    'overlapping entries',
    pythonLayout(
      { x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } },
      new Uint8Array(4),
    ),
    /overlap or hole/,
  );

  it('a missing file is an IO error naming the file; loadTree throws it, tagged', () => {
    const f = path.join(dir, 'nope.safetensors');
    const r = io.readTensors(f);
    expect(E.isLeft(r) && r.left._tag === 'SafetensorsIOError' && r.left.file === f).toBe(true);
    let thrown: unknown;
    try {
      io.loadTree(f);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(io.SafetensorsException);
    expect((thrown as InstanceType<typeof io.SafetensorsException>).error).toMatchObject({ _tag: 'SafetensorsIOError', file: f });
  });

  it('writes flat dotted records (state dicts) as is, and refuses names it cannot tell apart or leaves that are not tensors', () => {
    const f = path.join(dir, 'flat.safetensors');
    io.saveTree(f, { 'features.0.0.weight': tensor([1, 2]), 'classifier.1.bias': tensor([3]) });
    const t = io.loadTree(f).tree as any;
    expect([...dataSync(t.features[0][0].weight)]).toEqual([1, 2]);
    expect([...dataSync(t.classifier[1].bias)]).toEqual([3]);
    expect(() => io.saveTree(path.join(dir, 'x.safetensors'), { 'a.b': tensor([1]), a: { b: tensor([2]) } })).toThrow(/both named 'a.b'/);
    expect(() => io.saveTree(path.join(dir, 'x.safetensors'), { 'a..b': tensor([1]) })).toThrow(/empty dotted part/);
    expect(() => io.saveTree(path.join(dir, 'x.safetensors'), { a: 3 })).toThrow(/'a' is number/);
    expect(fs.existsSync(path.join(dir, 'x.safetensors'))).toBe(false);
  });

  it('overwrites atomically: the old content stays readable until the rename', () => {
    const f = path.join(dir, 'c.safetensors');
    io.saveTree(f, { x: tensor([1, 2]) });
    io.saveTree(f, { x: tensor([3, 4, 5]) });
    expect([...dataSync((io.loadTree(f).tree as any).x)]).toEqual([3, 4, 5]);
  });

  it('reads and writes raw tensors by name: dotted names stay flat, a Map or a record goes in, bad names and values are Lefts', () => {
    const f = path.join(dir, 'raw.safetensors');
    const w = io.writeTensors(f, new Map<string, io.Leaf>([['features.0.weight', tensor([1, 2])], ['n', new io.Int64Array([], BigInt64Array.from([7n]))]]), { step: '5' });
    expect(E.isRight(w)).toBe(true);
    const r = io.readTensors(f);
    if (E.isLeft(r)) throw new Error(r.left.message);
    expect([...r.right.tensors.keys()]).toEqual(['features.0.weight', 'n']);
    expect([...dataSync(r.right.tensors.get('features.0.weight') as any)]).toEqual([1, 2]);
    expect(r.right.metadata).toEqual({ step: '5' });
    expect(E.isRight(io.writeTensors(f, { a: tensor([1]) }))).toBe(true);
    const bad = (tensors: any, metadata?: any) => {
      const out = io.writeTensors(path.join(dir, 'y.safetensors'), tensors, metadata);
      return E.isLeft(out) ? `${out.left._tag}: ${out.left.message}` : 'written';
    };
    expect(bad({ __metadata__: tensor([1]) })).toMatch(/SafetensorsTreeError: .*'__metadata__' is reserved/);
    expect(bad({ '': tensor([1]) })).toMatch(/name '' is empty/);
    expect(bad({ a: [tensor([1])] })).toMatch(/'a' is object, not a tensor/);
    expect(bad({ a: tensor([1]) }, { epoch: 3 })).toMatch(/metadata 'epoch' must be a string/);
    expect(fs.existsSync(path.join(dir, 'y.safetensors'))).toBe(false);
  });

  it('loadTree refuses a file whose names cannot form a tree (a name that is also a prefix), naming both', () => {
    const f = path.join(dir, 'prefix.safetensors');
    expect(E.isRight(io.writeTensors(f, { a: tensor([1]), 'a.b': tensor([2]) }))).toBe(true);
    expect(() => io.loadTree(f)).toThrow(/prefix\.safetensors: 'a' is both a leaf and a prefix of 'a\.b'/);
  });
});
