/** writeFileAtomic: a reader sees the old content or the new, never part of either; a failed write leaves the old. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../../src/io/atomic.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atomic-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// A reader thread: reads the file in a loop until told to stop, and reports every content it saw that was not all one letter at full length.
const READER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
let stop = false, reads = 0; const torn = [];
parentPort.on('message', () => { stop = true; });
(function loop() {
  for (let i = 0; i < 50; i++) {
    const s = fs.readFileSync(workerData.file, 'latin1');
    reads++;
    if (s.length !== workerData.size || !(s === 'a'.repeat(s.length) || s === 'b'.repeat(s.length))) torn.push(s.length);
  }
  if (stop) parentPort.postMessage({ reads, torn }); else setImmediate(loop);
})();
`;

describe('writeFileAtomic', () => {
  it('a concurrent reader only ever sees a whole old or a whole new file', async () => {
    const file = path.join(tmp, 'big.txt');
    const size = 1 << 18;
    writeFileAtomic(file, 'a'.repeat(size));
    const w = new Worker(READER, { eval: true, workerData: { file, size } });
    const report = new Promise<{ reads: number; torn: number[] }>((res) => w.once('message', res));
    for (let i = 0; i < 20; i++) {
      writeFileAtomic(file, (i % 2 ? 'a' : 'b').repeat(size));
      await new Promise((r) => setImmediate(r));
    }
    w.postMessage('stop');
    const { reads, torn } = await report;
    await w.terminate();
    expect(reads).toBeGreaterThan(0);
    expect(torn).toEqual([]);
    expect(fs.readFileSync(file, 'latin1')).toBe('a'.repeat(size)); // the last write (i = 19)
    expect(fs.readdirSync(tmp).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('a write that fails half-way leaves the old content and no temporary file', () => {
    const file = path.join(tmp, 'keep.txt');
    writeFileAtomic(file, 'old');
    // Bytes whose length cannot be read: the write throws after the temporary file was opened.
    const broken = new Proxy(new Uint8Array(4), { get: (t, k) => (k === 'byteLength' ? (() => { throw new Error('disk full'); })() : Reflect.get(t, k)) });
    expect(() => writeFileAtomic(file, broken)).toThrow(/disk full/);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('.keep.txt'))).toEqual([]);
    writeFileAtomic(file, new TextEncoder().encode('new'));
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
  });

  it('names the file when its folder is missing', () => {
    expect(() => writeFileAtomic(path.join(tmp, 'no', 'such', 'x.txt'), 'x')).toThrow(/ENOENT.*no.such.x\.txt'/);
  });
});
