export * from './shape.ts';
export * from './tensor.ts';
export * from './ops.ts';
export * from './losses.ts';
export * as random from './random.ts';
