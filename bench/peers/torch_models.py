#!/usr/bin/python3
"""PyTorch CPU peer for `npm run bench -- --suite models`: torchvision efficientnet_b0 (one output)
train step (forward, BCE-with-logits, backward, RMSprop update) and eval-mode inference.
Prints one JSON object per line: {name, pass, medianMs, samples, peakRssMb}; inference rows also carry one
call's profile (torch.profiler self time per operator category, and the largest operators).
Run with OMP_NUM_THREADS=2 (the bench sets it) and Debian's python3-torch + libopenblas0-pthread.
  torch_models.py [--quick] [--only=8x224|16x128]   both workloads of each size, one row each
  torch_models.py --lockstep=b0/inference-16x128    one workload, timed one rep per `rep` line on stdin until `end`,
                                                    in turns with another process (protocol: bench/lockstep.ts)"""
import json, re, resource, sys, time, statistics
import torch, torchvision

torch.manual_seed(0)
torch.set_num_threads(int(__import__('os').environ.get('OMP_NUM_THREADS', '2')))
quick = '--quick' in sys.argv
only = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--only=')]
lockstep = next((a.split('=', 1)[1] for a in sys.argv if a.startswith('--lockstep=')), None)

WARM_UP = 3  # untimed calls first, as bench/peers/model-workload.ts

def timed_ms(fn):
    t = time.perf_counter(); fn(); return (time.perf_counter() - t) * 1000

def median_ms(fn, reps):
    for _ in range(WARM_UP):
        fn()
    ts = [timed_ms(fn) for _ in range(reps)]
    return statistics.median(ts), len(ts)

def median_ms_on_command(fn):
    """Warms up, says so, then times one call per `rep` line on stdin (answering {"ms": …}) until `end` or EOF."""
    for _ in range(WARM_UP):
        fn()
    print(json.dumps({'ready': True}), flush=True)
    ts = []
    for line in iter(sys.stdin.readline, ''):
        if line.strip() == 'end':
            break
        if line.strip() != 'rep':
            raise SystemExit(f'torch_models.py: unknown command {line.strip()!r} on stdin (rep | end)')
        ts.append(timed_ms(fn))
        print(json.dumps({'ms': ts[-1]}), flush=True)
    return statistics.median(ts), len(ts)

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

CONV = {'aten::mkldnn_convolution', 'aten::thnn_conv2d', 'aten::_slow_conv2d_forward', 'aten::_convolution', 'aten::convolution', 'aten::conv2d', 'aten::_conv_depthwise2d'}

def category(name, shapes):
    """The profile category of an operator (the same kinds of work as our jit profile's categories)."""
    if name in CONV:
        w = shapes[1] if len(shapes) > 1 and len(shapes[1]) == 4 else None
        if not w:
            return 'conv (other)'
        if w[2] * w[3] == 1:
            return 'pointwise conv'
        return 'depthwise conv' if w[1] == 1 and shapes[0][1] > 1 else 'dense conv'
    if 'batch_norm' in name:
        return 'batch norm'
    if name in ('aten::silu', 'aten::silu_', 'aten::sigmoid', 'aten::sigmoid_'):
        return 'activations'
    if name in ('aten::mul', 'aten::mul_', 'aten::add', 'aten::add_', 'aten::div', 'aten::div_'):
        return 'elementwise'
    if 'pool' in name or name in ('aten::mean', 'aten::sum'):
        return 'reductions'
    if name in ('aten::addmm', 'aten::linear', 'aten::mm', 'aten::matmul'):
        return 'matmul'
    return 'other'

def profile(fn):
    """One call under torch.profiler: self time per operator category and the largest operators (ms)."""
    from torch.profiler import ProfilerActivity, profile as prof
    with prof(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
        t = time.perf_counter(); fn(); total = (time.perf_counter() - t) * 1000
    cats, ops = {}, {}
    for e in p.key_averages(group_by_input_shape=True):
        ms = e.self_cpu_time_total / 1000
        if ms <= 0:
            continue
        c = category(e.key, e.input_shapes or [])
        cats.setdefault(c, [0.0, 0])
        cats[c][0] += ms; cats[c][1] += e.count
        label = f'{e.key} {c}' if e.key in CONV else e.key
        ops.setdefault(label, [0.0, 0])
        ops[label][0] += ms; ops[label][1] += e.count
    rows = lambda d: sorted(({'label': k, 'ms': round(v[0], 2), 'calls': v[1]} for k, v in d.items()), key=lambda r: -r['ms'])
    return {'totalMs': round(total, 1), 'categories': rows(cats), 'top': rows(ops)[:10]}

def build(batch, size):
    """torchvision's B0 (one output) with its input, and its train step and inference call."""
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
    def infer():
        with torch.no_grad():
            model(x)
    return model, step, infer

def row(name, kind, m, n, fn):
    r = {'name': name, 'pass': kind, 'medianMs': m, 'samples': n, 'peakRssMb': rss_mb()}
    if kind == 'inference':
        r['profile'] = profile(fn)
    return r

if lockstep:
    w = re.fullmatch(r'b0/(train-step|inference)-(\d+)x(\d+)', lockstep)
    if not w:
        raise SystemExit(f'torch_models.py: --lockstep takes b0/train-step-BxS or b0/inference-BxS, got {lockstep!r}')
    kind, batch, size = w[1], int(w[2]), int(w[3])
    model, step, infer = build(batch, size)
    fn = step if kind == 'train-step' else infer
    if kind == 'inference':
        # Inference runs on the model after a few train steps, as in the blocks mode (where the train rows come
        # first): straight from initialisation, with its batch norms' running statistics untouched, torchvision's
        # B0 in eval mode runs several times slower here (BENCHMARKS.md), which would flatter our ratio.
        model.train()
        for _ in range(WARM_UP):
            step()
    model.train(kind == 'train-step')
    m, n = median_ms_on_command(fn)
    print(json.dumps(row(lockstep, kind, m, n, fn)), flush=True)
    sys.exit(0)

for batch, size in [(8, 224), (16, 128)]:
    name = f'{batch}x{size}'
    if only and name not in only:
        continue
    model, step, infer = build(batch, size)
    model.train()
    m, n = median_ms(step, 3 if quick else 6)
    print(json.dumps(row(f'b0/train-step-{name}', 'train-step', m, n, step)), flush=True)
    model.eval()
    m, n = median_ms(infer, 5 if quick else 10)
    print(json.dumps(row(f'b0/inference-{name}', 'inference', m, n, infer)), flush=True)
