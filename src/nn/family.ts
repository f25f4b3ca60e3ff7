/** `nn.efficientnet`: the builder, the architectures and torchvision interop in one namespace. */
export * from './efficientnet.ts';
export * from './torchvision.ts';
