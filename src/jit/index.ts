/** The compiler: `jit` traces a function once per signature, fuses, plans memory and runs the compiled graph. */
export { jit, shapeOnly, type JitOptions, type Jitted, type Lowered } from './jit.ts';
export { arenaBytes } from './execute.ts';
export { type Profile, type ProfileRow, formatProfile } from './profile.ts';
