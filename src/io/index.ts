/** Reading and writing weights and checkpoints. */
export * from './safetensors.ts';
