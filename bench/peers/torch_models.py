#!/usr/bin/python3
"""PyTorch CPU peer for `npm run bench -- --suite models`: torchvision efficientnet_b0 (one output)
train step (forward, BCE-with-logits, backward, RMSprop update) and eval-mode inference.
Prints one JSON object per line: {name, pass, medianMs, samples, peakRssMb}.
Run with OMP_NUM_THREADS=2 (the bench sets it) and Debian's python3-torch + libopenblas0-pthread."""
import json, resource, sys, time, statistics
import torch, torchvision

torch.manual_seed(0)
torch.set_num_threads(int(__import__('os').environ.get('OMP_NUM_THREADS', '2')))
quick = '--quick' in sys.argv
only = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--only=')]

def median_ms(fn, reps, warm=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts), len(ts)

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

for batch, size in [(8, 224), (16, 128)]:
    name = f'{batch}x{size}'
    if only and name not in only:
        continue
    model = torchvision.models.efficientnet_b0(num_classes=1)
    # Dropout and stochastic depth stay at their defaults in train mode, as a user would train.
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.99, eps=1e-8)
    x = torch.randn(batch, 3, size, size)
    y = (torch.rand(batch, 1) > 0.5).float()
    lossf = torch.nn.BCEWithLogitsLoss()
    def step():
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
    model.train()
    m, n = median_ms(step, 3 if quick else 6)
    print(json.dumps({'name': f'b0/train-step-{name}', 'pass': 'train-step', 'medianMs': m, 'samples': n, 'peakRssMb': rss_mb()}), flush=True)
    model.eval()
    def infer():
        with torch.no_grad():
            model(x)
    m, n = median_ms(infer, 5 if quick else 10)
    print(json.dumps({'name': f'b0/inference-{name}', 'pass': 'inference', 'medianMs': m, 'samples': n, 'peakRssMb': rss_mb()}), flush=True)
