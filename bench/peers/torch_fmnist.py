#!/usr/bin/python3
"""PyTorch peer of src/nn/dwsnet.ts (the Fashion-MNIST depthwise-separable + dilated net) with the
same recipe: Adam, OneCycleLR, batch 128, softmax cross-entropy, random horizontal flips and
pad-2 random crops, inputs normalised with mean 0.2860 / std 0.3530.

  bench  [--batches N] [--batch B]     time N training steps (after 2 warm-up steps) on random
                                       28×28 inputs; prints one JSON line {name, pass, medianMs,
                                       samples, cpuMsPerStep, params, stepsPerEpoch, secondsPerEpoch}
  train  [--epochs E] [--data DIR]     a full run on Fashion-MNIST, one JSON line per epoch
  params                               the parameter count (also printed by the TypeScript side)

Run with OMP_NUM_THREADS=2 (the bench sets it) and Debian's python3-torch."""
import gzip, json, os, statistics, sys, time
import numpy as np
import torch
from torch import nn

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))

WIDTHS = (32, 64, 96, 96, 128, 128, 160)
MEAN, STD = 0.2860, 0.3530


def conv_bn_relu(cin, cout, k, stride=1, dilation=1, groups=1):
    # padding = dilation·(k − 1)/2: the TypeScript side's 'symmetric' padding.
    return [nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation, groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def dws(cin, cout, stride=1, dilation=1, k=3):
    return nn.Sequential(*conv_bn_relu(cin, cin, k, stride, dilation, groups=cin), *conv_bn_relu(cin, cout, 1))


def dwsnet(widths=WIDTHS, classes=10, dropout=0.1):
    c0, c1, c2, c3, c4, c5, c6 = widths
    return nn.Sequential(
        nn.Sequential(*conv_bn_relu(1, c0, 3)),
        dws(c0, c1), dws(c1, c2, stride=2), dws(c2, c3, dilation=2),
        dws(c3, c4, stride=2), dws(c4, c5, dilation=2), dws(c5, c6),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c6, classes))


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def arg(name, default):
    for a in sys.argv:
        if a.startswith(f'--{name}='):
            return type(default)(a.split('=', 1)[1])
    return default


def augment(x):
    """Random horizontal flip and a random crop after zero-padding by 2 (in normalised units)."""
    n = x.shape[0]
    flip = torch.rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2), value=(0 - MEAN) / STD)
    out = torch.empty_like(x)
    dy, dx = torch.randint(0, 5, (n,)), torch.randint(0, 5, (n,))
    for i in range(n):
        out[i] = pad[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


def make_step(model, opt, sched):
    lossf = nn.CrossEntropyLoss()
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(augment(x)), y)
        loss.backward()
        opt.step()
        sched.step()
        return loss.item()
    return step


def bench():
    batches, batch = arg('batches', 20), arg('batch', 128)
    model = dwsnet()
    steps_per_epoch = -(-60000 // batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps_per_epoch * 10)
    step = make_step(model, opt, sched)
    model.train()
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    for _ in range(2):
        step(x, y)
    ts = []
    cpu = time.process_time()
    for _ in range(batches):
        t = time.perf_counter(); step(x, y); ts.append((time.perf_counter() - t) * 1000)
    cpu_ms = (time.process_time() - cpu) * 1000 / batches
    med = statistics.median(ts)
    print(json.dumps({'name': f'fmnist/train-step-{batch}x28', 'pass': 'train-step', 'medianMs': med, 'samples': len(ts), 'cpuMsPerStep': cpu_ms,
                      'params': n_params(model), 'stepsPerEpoch': steps_per_epoch, 'secondsPerEpoch': med * steps_per_epoch / 1000}), flush=True)


def load(data, split):
    prefix = 'train' if split == 'train' else 't10k'
    with gzip.open(f'{data}/{prefix}-images-idx3-ubyte.gz') as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(f'{data}/{prefix}-labels-idx1-ubyte.gz') as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return (torch.from_numpy(x.astype(np.float32)) / 255 - MEAN) / STD, torch.from_numpy(y.astype(np.int64))


def train():
    epochs, batch, lr = arg('epochs', 10), arg('batch', 128), arg('lr', 3e-3)
    data = arg('data', '/usr/share/datasets/fashion-mnist')
    xtr, ytr = load(data, 'train')
    xte, yte = load(data, 'test')
    model = dwsnet()
    print(json.dumps({'params': n_params(model)}), flush=True)
    steps = -(-len(ytr) // batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps * epochs)
    step = make_step(model, opt, sched)
    for e in range(epochs):
        model.train()
        t = time.perf_counter()
        perm = torch.randperm(len(ytr))
        loss = sum(step(xtr[i], ytr[i]) * len(i) for i in perm.split(batch)) / len(ytr)
        secs = time.perf_counter() - t
        model.eval()
        with torch.no_grad():
            acc = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, len(yte), 1000)) / len(yte)
        print(json.dumps({'epoch': e + 1, 'trainLoss': loss, 'testAccuracy': acc, 'seconds': secs}), flush=True)


if __name__ == '__main__':
    mode = sys.argv[1] if len(sys.argv) > 1 else 'bench'
    {'bench': bench, 'train': train, 'params': lambda: print(n_params(dwsnet()))}[mode]()
