# Scoring by golfpack's rules (evaluate/bpb.py, windows.py, distributed.py; data/bytes.py).
LOSSES = [None]  # per-target losses of the last evaluation (EVAL_DUMP)


def load_tokens(pattern):
    """Validation shards (parameter-golf layout), concatenated in sorted order."""
    files = sorted(glob.glob(pattern))
    need(files, f'no validation shards match {pattern} (set DATA_PATH)')
    out = []
    for f in files:
        h = np.fromfile(f, '<i4', 256)
        need(h.size == 256 and h[0] == 20240520 and h[1] == 1, f'{f} is not a token shard')
        need(os.path.getsize(f) == 1024 + 2 * int(h[2]), f'{f}: shard size does not match its header')
        out.append(np.fromfile(f, '<u2', int(h[2]), offset=1024))
    return np.concatenate(out)


def byte_tables(path, vocab):
    """(base bytes, leading space, boundary) per token id, as golfpack.data.bytes builds them."""
    import sentencepiece as spm
    need(os.path.isfile(path), f'tokenizer not found: {path} (set TOKENIZER_PATH)')
    try:
        sp = spm.SentencePieceProcessor(model_file=path)
    except Exception:
        raise Bad(f'{path} is not a SentencePiece model')
    n = sp.get_piece_size()
    need(n <= vocab, f'tokenizer {path} has {n} pieces but the model\'s vocabulary is {vocab}: they do not belong together')
    base, space, bnd = np.zeros(vocab, np.int64), np.zeros(vocab, bool), np.ones(vocab, bool)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        bnd[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        p = sp.id_to_piece(i)
        if p.startswith('\u2581'):
            space[i], p = True, p[1:]
        base[i] = len(p.encode())
    return base, space, bnd, n


def sliding(T, L, S, off=0):
    ws = np.arange(0, max(T, 0), S, dtype=np.int64)
    ws = ws[(ws == 0) | (ws + L - S < T)]
    return ws + off, np.minimum(L, T - ws), np.where(ws == 0, 0, L - S)


def docs(tok, bos):
    """(start, targets) of every BOS-led document (windows.document_spans)."""
    n = tok.size
    s = np.flatnonzero(tok == bos).astype(np.int64)
    s = s[s < n - 1]
    if s.size == 0 or s[0]:
        s = np.r_[0, s]
    return s, np.append(s[1:], n - 1) - s


def segments(tok, mode, L, S, bos):
    """Rows (start, length, first scored position) of plain, sliding or doc-aware evaluation."""
    n = tok.size
#if plain
    if mode == 'plain':
        k = (n - 1) // L
        return np.arange(k) * L, np.full(k, L), np.zeros(k, np.int64)
#endif
#if sliding
    if mode == 'sliding':
        return sliding(n - 1, L, S)
#endif
#if doc
    if mode == 'doc-aware':
        st, ct = docs(tok, bos)
        if S is None:
            per = -(-ct // L)
            piece = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
            ln = np.minimum(L, np.repeat(ct, per) - piece * L)
            return np.repeat(st, per) + piece * L, ln, np.zeros_like(ln)
        parts = [sliding(int(c), L, S, int(a)) for a, c in zip(st, ct)]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
#endif
    raise Bad(f'EVAL_MODE {mode!r} is not in this script')


def evaluate(model, tok, tabs, mode, L, S, batch, dev, amp, bos):
    """(val_loss, val_bpb, targets, bytes); under torchrun each rank runs a block of the batches."""
    start, length, lo_ = segments(tok, mode, L, S, bos)
    need(len(start), f'{tok.size} tokens are fewer than one window of {L} + 1')
    order = np.argsort(-length, kind='stable')
    batches, i = [], 0
    while i < len(order):
        k = max(1, batch * L // int(length[order[i]]))
        batches.append(order[i:i + k])
        i += k
    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    nb = len(batches)
    res = torch.zeros(3, nb, dtype=torch.float64, device=dev)
    base, space, nbnd = (torch.as_tensor(a, device=dev) for a in (tabs[0], tabs[1], ~tabs[2]))
    tt = torch.from_numpy(tok.astype(np.int32)).to(dev)
    LOSSES[0] = lat = np.zeros(tok.size)
    with torch.inference_mode():
        for b in range(nb * rank // world, nb * (rank + 1) // world):
            rows = batches[b]
            st, ln, sl = (torch.as_tensor(a[rows], device=dev) for a in (start, length, lo_))
            T, lo = int(length[rows].max()), int(lo_[rows].min())
            j = torch.arange(T, device=dev)
            inseg = j[None] < ln[:, None]
            pos = torch.where(inseg, st[:, None] + j[None], st[:, None])
            x, y = tt[pos].long(), tt[pos + 1].long()
            sc = (inseg & (j[None] >= sl[:, None]))[:, lo:]
            with amp():
                h = model.forward_hidden(x)
                z = model.logits(h[:, lo:] if lo else h)
            y, xp = y[:, lo:], x[:, lo:]
            ce = F.cross_entropy(z.float().reshape(-1, z.shape[-1]), y.reshape(-1), reduction='none').view_as(y).double()
            lat[(pos + 1)[:, lo:][sc].cpu().numpy()] = ce[sc].cpu().numpy()
            if dev.type == 'cpu':
                res[0, b] = float(np.sum(ce[sc].numpy()))
            else:
                res[0, b] = torch.where(sc, ce, 0.0).sum()
            res[1, b] = sc.sum()
            res[2, b] = torch.where(sc, base[y] + (space[y] & nbnd[xp]), 0).sum()
    if world > 1:
        torch.distributed.all_reduce(res)
    r = res.cpu()
    loss, n, nbytes = math.fsum(r[0].tolist()), int(r[1].sum()), int(r[2].sum())
    need(nbytes > 0, 'the scored targets stand for 0 bytes')
    return loss / n, loss / n / math.log(2) * n / nbytes, n, nbytes
