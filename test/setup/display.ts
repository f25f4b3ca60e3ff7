/**
 * A virtual X display for gpu.js's headless-gl mode, so the GL conformance tests run inside a plain
 * `npm test`: when DISPLAY is unset and Xvfb is installed (Debian: xvfb xauth libgl1-mesa-dri), one
 * Xvfb server with GLX (Mesa's software GL renders) is started for the run, on a free display number
 * it reports through -displayfd, and the test forks inherit DISPLAY. Without Xvfb the GL tests report
 * themselves skipped with the reason.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

const STARTUP_MS = 15_000;

function startXvfb(): Promise<{ proc: ChildProcess; display: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn('Xvfb', ['-displayfd', '1', '-screen', '0', '1280x1024x24', '+extension', 'GLX', '-nolisten', 'tcp'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const timer = setTimeout(() => {
      proc.kill();
      reject(new Error(`Xvfb printed no display number within ${STARTUP_MS / 1000} s`));
    }, STARTUP_MS);
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, display: `:${m[1]}` });
      }
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Xvfb exited with code ${code} before it was ready`));
    });
  });
}

export default async function setup(): Promise<(() => void) | undefined> {
  if (process.env.DISPLAY) return undefined;
  if (spawnSync('sh', ['-c', 'command -v Xvfb'], { stdio: 'ignore' }).status !== 0) {
    console.log('display: Xvfb not found (apt-get install xvfb xauth libgl1-mesa-dri); the headless-gl tests will be skipped');
    return undefined;
  }
  try {
    const { proc, display } = await startXvfb();
    process.env.DISPLAY = display;
    console.log(`display: started Xvfb on ${display} for the headless-gl tests`);
    return () => {
      proc.kill();
    };
  } catch (e) {
    console.log(`display: could not start Xvfb (${(e as Error).message}); the headless-gl tests will be skipped`);
    return undefined;
  }
}
