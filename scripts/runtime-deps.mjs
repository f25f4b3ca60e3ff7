// The installed package directories a set of packages needs at run time: the packages named on the
// command line and, transitively, their dependencies and installed optional dependencies (peer
// dependencies are expected among them), found the way Node resolves them (node_modules of the
// requiring package, then of each folder above it). Prints one path per line, relative to the
// project root. Used by scripts/device-bench.sh to pack only what the models bench loads.
//   node scripts/runtime-deps.mjs tsx webgpu @tensorflow/tfjs …
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

/** The directory of package `name` as seen from directory `from` (null when not installed). */
function locate(name, from) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir === path.dirname(dir)) return null;
  }
}

const found = new Set();
const visit = (name, from, optional) => {
  const dir = locate(name, from);
  if (!dir) {
    if (optional) return;
    throw new Error(`runtime-deps: package '${name}' (needed from ${path.relative(root, from) || '.'}) is not installed; run npm ci`);
  }
  if (found.has(dir)) return;
  found.add(dir);
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  for (const d of Object.keys(pkg.dependencies ?? {})) visit(d, dir, false);
  for (const d of Object.keys(pkg.optionalDependencies ?? {})) visit(d, dir, true);
};
const roots = process.argv.slice(2);
if (!roots.length) throw new Error('usage: node scripts/runtime-deps.mjs PACKAGE…');
for (const r of roots) visit(r, root, false);
console.log([...found].map((d) => path.relative(root, d)).sort().join('\n'));
