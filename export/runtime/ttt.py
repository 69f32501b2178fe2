# Score-first test-time training (evaluate/ttt.py, evaluate/lora.py): lora (per-document LoRA),
# sgd / q (full-parameter SGD on dense deltas), phased (lora + SGD phases). Every chunk is scored
# by a forward pass that ran before any update that could have seen it.
#if lora|sgd


class Bank:
    def __init__(s, n):
        s.slots, s.rows, s.on = n, None, True


#if lora
class LoRA(nn.Module):
    def __init__(s, base, k, n, cfg, bank, gen):
        super().__init__()
        s.base, s.k, s.bank, s.gen = base, k, bank, gen
        r = cfg['rank']
        s.scale = cfg['alpha'] / r
        s.A = nn.Parameter(torch.empty(bank.slots, r, k))
        s.B = nn.Parameter(torch.zeros(bank.slots, n, r))
        s.reset(torch.arange(bank.slots), False)

    @torch.no_grad()
    def reset(s, slots, keep):
        slots = slots.to(s.B.device)
        s.B[slots] = 0.0
        if not keep:
            a = torch.rand(len(slots), s.A.shape[1], s.k, generator=s.gen)
            s.A[slots] = ((a * 2 - 1) * (1.0 / math.sqrt(s.k))).to(s.A.device)

    def forward(s, x):
        y = s.base(x)
        if not s.bank.on:
            return y
        rows = s.bank.rows
        A, B = (s.A, s.B) if rows is None else (s.A[rows], s.B[rows])
        x3 = x.reshape(x.shape[0], -1, s.k)
        h = torch.bmm(x3, A.transpose(1, 2).to(x3.dtype))
        d = torch.bmm(h, B.transpose(1, 2).to(h.dtype)) * s.scale
        return y + d.reshape(y.shape).to(y.dtype)


class Adam:
    """AdamW with a step count per slot; only active slots move (evaluate/lora.py SlotAdamW)."""

    def __init__(s, params, n, cfg, dev):
        s.p, s.lr, (s.b1, s.b2), s.eps, s.wd = params, cfg['lr'], cfg['betas'], cfg['eps'], cfg['weight_decay']
        s.t = torch.zeros(n, dtype=torch.float64, device=dev)
        s.m = [torch.zeros_like(p) for p in params]
        s.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def reset(s, slots):
        slots = slots.to(s.t.device)
        s.t[slots] = 0
        for m, v in zip(s.m, s.v):
            m[slots] = 0
            v[slots] = 0

    @torch.no_grad()
    def step(s, act):
        if s.lr == 0.0:
            return
        act = act.to(s.t.device)
        s.t += act.to(s.t.dtype)
        t = s.t.clamp(min=1)
        c1, c2 = (1 - s.b1 ** t).float(), (1 - s.b2 ** t).float()
        for p, m, v in zip(s.p, s.m, s.v):
            if p.grad is None:
                continue
            sh = (-1,) + (1,) * (p.dim() - 1)
            a, g = act.view(sh).to(p.dtype), p.grad
            m.mul_(1 - a * (1 - s.b1)).add_(a * (1 - s.b1) * g)
            v.mul_(1 - a * (1 - s.b2)).add_(a * (1 - s.b2) * g * g)
            u = (m / c1.view(sh)) / ((v / c2.view(sh)).sqrt() + s.eps)
            if s.wd:
                u = u + s.wd * p
            p.sub_(s.lr * a * u)


#endif


#if sgd
class Delta(nn.Module):
    """base(x) + x Delta^T with a dense trainable Delta (zero at start): the full-parameter variants."""

    def __init__(s, base, k, n, dev):
        super().__init__()
        s.base, s.in_features, s.out_features = base, k, n
        s.delta = nn.Parameter(torch.zeros(n, k, device=dev))

    def forward(s, x):
        return s.base(x) + F.linear(x, s.delta.to(x.dtype))
#endif


SUFFIX = {'q': ('.attn.c_q',), 'k': ('.attn.c_k',), 'v': ('.attn.c_v',), 'o': ('.attn.proj',), 'mlp': ('.mlp.fc', '.mlp.proj')}


def evaluate_ttt(model, tok, tabs, cfg, dev, amp, bos):
    """(val_loss, val_bpb, targets, bytes) of score-first LoRA TTT; `losses` kept for audits."""
    C, W, nb = cfg['chunk'], cfg['context'], cfg['doc_batch']
    need(W % C == 0, f'TTT context {W} is not a multiple of the chunk {C}')
    t0 = time.perf_counter()
    n = tok.size
    tokd = torch.from_numpy(tok.astype(np.int64)).to(dev)
    t = tok.astype(np.int64)
    nbytes = np.zeros(n, np.int64)
    nbytes[1:] = tabs[0][t[1:]] + (tabs[1][t[1:]] & ~tabs[2][t[:-1]])
    loss_at, seen = np.zeros(n), np.zeros(n, np.int8)
    starts, counts = docs(tok, bos)
    model.to(dev).eval()
    method = cfg['method']
    bank, gen = Bank(nb), torch.Generator().manual_seed(cfg['seed'])
    ad, params, opt = [], [], None

    def wrap(targets, make):
        suf = tuple(x for g in targets if g != 'lm_head' for x in SUFFIX[g])
        out = []
        for name, m in list(model.named_modules()):
            if name.endswith(suf):  # the slots themselves (a Delta's inner base is '<slot>.base')
                par, _, at = name.rpartition('.')
                w = make(m)
                setattr(model.get_submodule(par), at, w)
                out.append(w)
        return out

    for p in model.parameters():
        p.requires_grad_(False)
#if sgd
    if method != 'lora':  # deltas first: phased's LoRA then wraps base + delta
        params = [d.delta for d in wrap(cfg['sgd_targets'], lambda m: Delta(m, m.in_features, m.out_features, dev))]
        if cfg['sgd_controls']:
            for name, p in model.named_parameters():
                if p.dim() <= 1 or name.endswith(('resid_mix', 'skip_weights')):
                    p.requires_grad_(True)
                    params.append(p)
        sgd = torch.optim.SGD(params, lr=cfg['sgd_lr'], momentum=cfg['sgd_momentum'])
#endif
    if method in ('lora', 'phased'):
        ad = wrap(cfg['targets'], lambda m: LoRA(m, m.in_features, m.out_features, cfg, bank, gen).to(dev))
        if 'lm_head' in cfg['targets']:
            model.lm_head = LoRA(model.lm_head or model.tied, model.c['model_dim'], model.c['vocab_size'], cfg, bank,
                                 gen).to(dev)
            ad.append(model.lm_head)
        opt = Adam([p for a in ad for p in (a.A, a.B)], nb, cfg, dev)

    def fwd(x, y, lo):
        with amp():
            h = model.forward_hidden(x)
            z = model.logits(h[:, lo:] if lo else h).float()
        return z, F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), reduction='none').view_as(y)

    def chunk(dd, c, train_mask, o):
        s, ln_ = starts[dd], counts[dd]
        ws = max(0, (c + 1) * C - W)
        length = np.minimum((c + 1) * C, ln_) - ws
        lo, T = c * C - ws, int(length.max())
        j = torch.arange(T, device=dev)
        valid = j[None] < torch.as_tensor(length, device=dev)[:, None]
        b0 = torch.as_tensor(s + ws, device=dev)
        pos = torch.where(valid, b0[:, None] + j[None], b0[:, None])
        x, y, sc = tokd[pos], tokd[pos + 1][:, lo:], valid[:, lo:]
        tgt = (s + 1 + ws)[:, None] + np.arange(lo, T)[None]
        train = o is not None and bool(train_mask.any())
        with torch.set_grad_enabled(train):
            z, ce = fwd(x, y, lo)
            sce = ce
            if cfg['temperature'] != 1.0:
                with torch.no_grad():
                    sce = F.cross_entropy((z / cfg['temperature']).reshape(-1, z.shape[-1]), y.reshape(-1),
                                          reduction='none').view_as(y)
            m = sc.cpu().numpy()
            idx = tgt[m]
            need(not seen[idx].any(), 'a target was scored twice')
            loss_at[idx] = sce.detach().double().cpu().numpy()[m]  # counted: before any update
            seen[idx] = 1
            if train:
                tm = torch.as_tensor(train_mask, device=dev)
                act = torch.zeros(nb, dtype=torch.bool, device=dev)
                act[bank.rows[tm]] = True
                for e in range(cfg['epochs']):
                    if e:
                        _, ce = fwd(x, y, lo)
                    wv = sc.float()
                    loss = ((ce * wv).sum(1) / wv.sum(1).clamp(min=1))[tm].sum()
                    for p in o.p:
                        p.grad = None
                    loss.backward()
                    o.step(act)

    def run(dd, o):
        nc = -(-counts[dd] // C)
        bank.on = o is not None
        if o is not None:
            sl = torch.arange(len(dd))
            for a in ad:
                a.reset(sl, cfg['keep_a_warm'])
            o.reset(sl)
        for c in range(int(nc.max())):
            act = np.flatnonzero(nc > c)
            bank.rows = torch.as_tensor(act, device=dev)
            chunk(dd[act], c, nc[act] > c + 1, o)
        bank.rows = None

#if sgd
    def sgd_rows(dd, lr_of, step):
        """SGD over documents already scored, cut into hard `context`-token rows, sgd_batch rows a step."""
        st_, ln_ = [], []
        for d in dd:
            for o in range(0, int(counts[d]), W):
                st_.append(starts[d] + o)
                ln_.append(min(W, counts[d] - o))
        st_, ln_ = np.asarray(st_, np.int64), np.asarray(ln_, np.int64)
        for i in range(0, len(st_), cfg['sgd_batch']):
            a, ln = st_[i:i + cfg['sgd_batch']], ln_[i:i + cfg['sgd_batch']]
            j = torch.arange(int(ln.max()), device=dev)
            valid = j[None] < torch.as_tensor(ln, device=dev)[:, None]
            b0 = torch.as_tensor(a, device=dev)
            pos = torch.where(valid, b0[:, None] + j[None], b0[:, None])
            with torch.enable_grad():
                _, ce = fwd(tokd[pos], tokd[pos + 1], 0)
                loss = (ce * valid).sum() / valid.sum()
                sgd.zero_grad(set_to_none=True)
                loss.backward()
            if cfg['grad_clip'] > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg['grad_clip'])
            for g in sgd.param_groups:
                g['lr'] = lr_of(step)
            sgd.step()
            step += 1
        return step
#endif
#if phased
    prefix = min(cfg['prefix_docs'], starts.size)
    pending = sorted({-(-prefix * (k + 1) // cfg['phases']) for k in range(cfg['phases'])})

    def phase(done, over):
        """At the first doc-batch edge past a phase boundary: SGD on every document scored so far."""
        while pending and done >= pending[0]:
            pending.pop(0)
            if over or cfg['sgd_lr'] == 0:
                continue
            bank.on = False  # the base (+ deltas) learns alone
            for p in params:
                p.requires_grad_(True)
            dd = np.arange(done)
            steps = max(1, -(-int(sum(-(-int(n) // W) for n in counts[dd])) // cfg['sgd_batch'])) * cfg['sgd_epochs']
            lr = lambda i: cfg['sgd_lr'] * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))
            step = 0
            for _ in range(cfg['sgd_epochs']):
                step = sgd_rows(dd, lr, step)
            for p in params:
                p.requires_grad_(False)

    if method == 'phased':
        for p in params:
            p.requires_grad_(False)
#endif
    alld = np.arange(starts.size)
    if method in ('lora', 'phased'):
        for i in range(0, len(alld), nb):
            bt = alld[i:i + nb]
            over = cfg['time_limit_s'] is not None and time.perf_counter() - t0 > cfg['time_limit_s']
            long = counts[bt] > cfg['max_doc_len'] if cfg['max_doc_len'] is not None else np.zeros(len(bt), bool)
            if (~long).any():
                run(bt[~long], None if over else opt)
            for k in range(0, int(long.sum()), nb):
                run(bt[long][k:k + nb], None)
#if phased
            if method == 'phased':
                phase(int(bt[-1]) + 1, over)
#endif
#if sgd
    else:  # sgd, q: groups of whole documents; each is scored, then trained on
        groups, cur, acc = [], [], 0
        for d in alld:
            cur.append(d)
            acc += int(counts[d])
            if acc >= cfg['sgd_chunk_tokens']:
                groups.append(np.asarray(cur))
                cur, acc = [], 0
        if cur:
            groups.append(np.asarray(cur))
        lr0 = cfg['sgd_lr']
        for k, g in enumerate(groups):
            for i in range(0, len(g), nb):
                run(g[i:i + nb], None)
            if cfg['time_limit_s'] is not None and time.perf_counter() - t0 > cfg['time_limit_s']:
                lr0 = 0.0  # no more updates; the rest is scored as is
            if k == len(groups) - 1 or lr0 == 0:
                continue
            lr_k = lr0 * 0.5 * (1 + math.cos(math.pi * k / max(1, len(groups) - 1)))
            for _ in range(cfg['sgd_epochs']):
                sgd_rows(g, lambda i: lr_k, 0)
#endif
    need(seen[1:].all() and not seen[0], 'TTT did not score every target once')
    total = int(nbytes[1:].sum())
    need(total > 0, 'the scored targets stand for 0 bytes')
    loss = math.fsum(loss_at[1:].tolist()) / (n - 1)
    LOSSES[0] = loss_at
    return loss, loss / math.log(2) * (n - 1) / total, n - 1, total
#endif
