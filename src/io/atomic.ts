/**
 * The one way files are replaced: write a temporary file in the same folder, fsync it, rename it
 * over the target, then fsync the folder so the rename itself survives a power cut. A reader (or a
 * crash at any point) sees the old content or the new, never part of either.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const tmpName = (file: string): string =>
  path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`);

/** fsyncs a folder (its entries: a rename into it). Platforms that cannot open a folder for fsync are skipped. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    /* EINVAL/EPERM on platforms without folder fsync: the renamed file itself is synced */
  } finally {
    fs.closeSync(fd);
  }
}

/** Replaces `file` with `data` atomically and durably (see the module comment); an I/O error is thrown naming `file`, which is left as it was. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const abs = path.resolve(file);
  const tmp = tmpName(abs);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx');
    for (let at = 0; at < bytes.byteLength; ) at += fs.writeSync(fd, bytes, at, bytes.byteLength - at);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, abs);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    // Name the file the caller asked for, not the temporary one.
    if (e instanceof Error) e.message = e.message.replaceAll(tmp, abs);
    throw e;
  }
  fsyncDir(path.dirname(abs));
}
