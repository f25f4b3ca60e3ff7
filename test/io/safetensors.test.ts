import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
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
    io.saveSafetensors(f, tree, { format: 'pt', epoch: '3' });
    const back = io.loadSafetensors(f) as any;
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
    expect(io.loadSafetensorsMetadata(f)).toEqual({ format: 'pt', epoch: '3' });
    // No temporary file is left behind.
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('writes the Python layout: LE u64 header length, padded JSON header, names sorted, offsets contiguous', () => {
    const f = path.join(dir, 'b.safetensors');
    io.saveSafetensors(f, { b: tensor(new Float32Array([1, 2]), [2]), a: tensor(new Float64Array([3]), [1, 1]) }, { k: 'v' });
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
    const t = io.loadSafetensors(f) as any;
    expect([...dataSync(t.features[0][1].weight)]).toEqual([0.5, 1.5, -2]);
    expect(t.features[0][1].num_batches_tracked.data[0]).toBe(42n);
  });

  const corrupt = (name: string, bytes: Uint8Array, msg: RegExp) =>
    it(`rejects ${name} with an error naming the file`, () => {
      const f = path.join(dir, `${name.replace(/\W+/g, '_')}.safetensors`);
      fs.writeFileSync(f, bytes);
      const r = io.loadSafetensorsE(f);
      expect(E.isLeft(r)).toBe(true);
      if (E.isLeft(r)) {
        expect(r.left._tag).toBe('SafetensorsFormatError');
        expect(r.left.file).toBe(f);
        expect(r.left.message).toMatch(msg);
      }
      expect(() => io.loadSafetensors(f)).toThrow(f);
    });

  const good = (() => {
    const f = path.join(dir, 'good.safetensors');
    io.saveSafetensors(f, tree);
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

  it('a missing file is an IO error naming the file; the TaskEither form agrees', async () => {
    const f = path.join(dir, 'nope.safetensors');
    const r = io.loadSafetensorsE(f);
    expect(E.isLeft(r) && r.left._tag === 'SafetensorsIOError' && r.left.file === f).toBe(true);
    const t = await io.loadSafetensorsTE(f)();
    expect(E.isLeft(t)).toBe(true);
    const ok = await io.loadSafetensorsTE(path.join(dir, 'good.safetensors'))();
    expect(E.isRight(ok)).toBe(true);
  });

  it('writes flat dotted records (state dicts) as is, and refuses names it cannot tell apart or leaves that are not tensors', () => {
    const f = path.join(dir, 'flat.safetensors');
    io.saveSafetensors(f, { 'features.0.0.weight': tensor([1, 2]), 'classifier.1.bias': tensor([3]) });
    const t = io.loadSafetensors(f) as any;
    expect([...dataSync(t.features[0][0].weight)]).toEqual([1, 2]);
    expect([...dataSync(t.classifier[1].bias)]).toEqual([3]);
    expect(() => io.saveSafetensors(path.join(dir, 'x.safetensors'), { 'a.b': tensor([1]), a: { b: tensor([2]) } })).toThrow(/both named 'a.b'/);
    expect(() => io.saveSafetensors(path.join(dir, 'x.safetensors'), { 'a..b': tensor([1]) })).toThrow(/empty dotted part/);
    expect(() => io.saveSafetensors(path.join(dir, 'x.safetensors'), { a: 3 })).toThrow(/'a' is number/);
    expect(fs.existsSync(path.join(dir, 'x.safetensors'))).toBe(false);
  });

  it('overwrites atomically: the old content stays readable until the rename', () => {
    const f = path.join(dir, 'c.safetensors');
    io.saveSafetensors(f, { x: tensor([1, 2]) });
    io.saveSafetensors(f, { x: tensor([3, 4, 5]) });
    expect([...dataSync((io.loadSafetensors(f) as any).x)]).toEqual([3, 4, 5]);
  });
});
