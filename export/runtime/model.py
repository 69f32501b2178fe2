# The golfpack GPT (model/gpt.py, model/layers.py) as the exported script runs it: the same
# arithmetic in the same order, weights as golfpack's packed loader computes them.


def rms(x):
    return F.rms_norm(x, (x.size(-1),))


class Lin(nn.Module):
    """A frozen linear slot: x W^T, plus (x B^T) A^T when an LQER term is kept apart."""

    def __init__(self, n, k, bias=False):
        super().__init__()
        self.in_features, self.out_features = k, n
        self.weight = nn.Parameter(torch.empty(n, k), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(n), requires_grad=False) if bias else None
        self.register_buffer('A', None, persistent=False)  # LQER factors, set by build_model; follow .to(dev)
        self.register_buffer('B', None, persistent=False)

    def forward(self, x):
        y = F.linear(x, self.weight.to(x.dtype))
#if lowrank
        if self.A is not None:
            x2 = x.reshape(-1, self.in_features)
            y = y + ((x2 @ self.B.to(x2.dtype).t()) @ self.A.to(x2.dtype).t()).reshape(y.shape)
#endif
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y


def param(*shape):
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


class Rotary:
    def __init__(self, dims, base, train_len):
        self.dims, self.base, self.train_len, self.key = dims, base, train_len, None

    def __call__(self, T, dev):
        if self.key != (T, dev):
            base = self.base
#if ntk
            if self.train_len is not None and T > self.train_len:
                base = base * (T / self.train_len) ** (self.dims / (self.dims - 2))
#endif
            inv = 1.0 / base ** (torch.arange(0, self.dims, 2, dtype=torch.float32, device=dev) / self.dims)
            fr = torch.outer(torch.arange(T, dtype=torch.float32, device=dev), inv)
            self.tab, self.key = (fr.cos(), fr.sin()), (T, dev)
        return self.tab


def rotate(x, cos, sin):
    r = 2 * cos.size(-1)
    cos, sin = cos.to(x.dtype)[None, None], sin.to(x.dtype)[None, None]
    xr = x[..., :r] if r < x.size(-1) else x
    h = r // 2
    a, b = xr[..., :h], xr[..., h:]
    rot = torch.cat((a * cos + b * sin, a * -sin + b * cos), dim=-1)
    return rot if r == x.size(-1) else torch.cat((rot, x[..., r:]), dim=-1)


class Attn(nn.Module):
    def __init__(s, c, i):
        super().__init__()
        D, H, KV = c['model_dim'], c['num_heads'], c['num_kv_heads']
        hd = D // H
        s.H, s.KV, s.hd, s.qkn = H, KV, hd, c['qk_norm']
        s.c_q, s.c_k, s.c_v, s.proj = Lin(D, D), Lin(KV * hd, D), Lin(KV * hd, D), Lin(D, D)
        s.q_gain = param(H)
        s.xsa = False
        s.gate_in = None
#if xsa
        s.xsa = c['xsa'] and (c['xsa_layers'] is None or i in c['xsa_layers'])
#endif
#if gate
        if c['gated_attention']:
            s.gate_in = c['attn_gate_dim'] or D
            s.attn_gate = Lin(H, s.gate_in, c['attn_gate_bias'])
#endif

    def forward(s, x, cos, sin, vx=None):
        B, T, D = x.shape
        H, KV, hd = s.H, s.KV, s.hd
        q = s.c_q(x).reshape(B, T, H, hd).transpose(1, 2)
        k = s.c_k(x).reshape(B, T, KV, hd).transpose(1, 2)
        v_raw = s.c_v(x)
        v = v_raw if vx is None else v_raw + vx
        v = v.reshape(B, T, KV, hd).transpose(1, 2)
        if s.qkn:
            q, k = rms(q), rms(k)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        q = q * s.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=KV != H)
#if xsa
        if s.xsa:
            yg = y.reshape(B, KV, H // KV, T, hd)
            vn = F.normalize(v, dim=-1).unsqueeze(2)
            y = (yg - (yg * vn).sum(dim=-1, keepdim=True) * vn).reshape(B, H, T, hd)
#endif
#if gate
        if s.gate_in is not None:
            g = torch.sigmoid(s.attn_gate(x[..., :s.gate_in]))
            y = y * g.transpose(1, 2).unsqueeze(-1).to(y.dtype)
#endif
        return s.proj(y.transpose(1, 2).reshape(B, T, D)), v_raw


class MLP(nn.Module):
    def __init__(s, c):
        super().__init__()
        D, h = c['model_dim'], int(c['mlp_mult'] * c['model_dim'])
        s.fc, s.proj = Lin(h, D), Lin(D, h)
        s.slope = c['leaky_slope'] if c['activation'] == 'leaky_relu2' else 0.0

    def forward(s, x):
        h = s.fc(x)
#if leaky
        if s.slope != 0.0:
            return s.proj(F.leaky_relu(h, s.slope).square())
#endif
        return s.proj(torch.relu(h).square())


class Block(nn.Module):
    def __init__(s, c, i):
        super().__init__()
        D = c['model_dim']
        s.attn, s.mlp = Attn(c, i), MLP(c)
        s.attn_scale, s.mlp_scale, s.resid_mix = param(D), param(D), param(2, D)
        s.ln = 1.0 / math.sqrt(i + 1) if c['ln_scale'] else 1.0
        p = c['parallel_residual_start']
        s.par = p is not None and i >= p

    def norm(s, x):
        n = rms(x)
        return n * s.ln if s.ln != 1.0 else n

    def forward(s, x, x0, cos, sin, vx=None):
        mix = s.resid_mix.to(x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        n = s.norm(x)
        a, v_raw = s.attn(n, cos, sin, vx)
        asc, msc = s.attn_scale.to(x.dtype)[None, None, :], s.mlp_scale.to(x.dtype)[None, None, :]
#if parallel
        if s.par:
            return x + asc * a + msc * s.mlp(n), v_raw
#endif
        x = x + asc * a
        return x + msc * s.mlp(s.norm(x)), v_raw


#if bigram
class Bigram(nn.Module):
    def __init__(s, c):
        super().__init__()
        n, d, D = c['bigram_buckets'], c['bigram_dim'], c['model_dim']
        s.n, s.bos = n, c['bos_id'] if c['bigram_bos_bucket'] else None
        s.embed = nn.Embedding(n, d)
        s.embed.weight.requires_grad_(False)
        s.proj = Lin(D, d) if d != D else None
        s.scale = param()

    def forward(s, idx):
        t, fix = idx.to(torch.int32), s.n - 1
        b = torch.full_like(t, fix)
        b[:, 1:] = torch.bitwise_xor(36313 * t[:, 1:], 27191 * t[:, :-1]) % fix
        if s.bos is not None:
            b = b.masked_fill(idx == s.bos, fix)
        h = s.embed(b.long())
        if s.proj is not None:
            h = s.proj(h)
        return h * s.scale.to(h.dtype)
#endif


#if smear
class Smear(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.gate, s.bos, s.lerp = param(c['model_dim']), c['bos_id'], c['smear_mode'] == 'lerp'

    def forward(s, x, idx):
        g = torch.sigmoid(s.gate.to(x.dtype))[None, None, :]
        prev = torch.cat((torch.zeros_like(x[:, :1]), x[:, :-1]), dim=1)
        prev = prev.masked_fill((idx == s.bos).unsqueeze(-1), 0.0)
        return (1 - g) * x + g * prev if s.lerp else x + g * prev
#endif


#if ve
class VE(nn.Module):
    def __init__(s, c):
        super().__init__()
        kv = c['num_kv_heads'] * (c['model_dim'] // c['num_heads'])
        s.embed = nn.Embedding(c['vocab_size'], c['ve_dim'])
        s.embed.weight.requires_grad_(False)
        s.proj = Lin(kv, c['ve_dim']) if c['ve_dim'] != kv else None
        s.scale = param()

    def forward(s, idx):
        h = s.embed(idx)
        if s.proj is not None:
            h = s.proj(h)
        return h * s.scale.to(h.dtype)
#endif


class GPT(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.c = c
        V, D, L = c['vocab_size'], c['model_dim'], c['num_layers']
        s.tok_emb = nn.Embedding(V, D)
        s.tok_emb.weight.requires_grad_(False)
        s.bigram = s.smear = s.ve_shared = s.lm_head = None
#if bigram
        if c['bigram_buckets']:
            s.bigram = Bigram(c)
#endif
#if smear
        if c['smear_gate']:
            s.smear = Smear(c)
#endif
        s.blocks = nn.ModuleList(Block(c, i) for i in range(L))
        s.sched = list(range(L))
#if recur
        a, b = c['recur_start'], c['recur_end']
        if a is not None and c['recur_repeats'] > 1:
            s.sched = list(range(a)) + list(range(a, b + 1)) * c['recur_repeats'] + list(range(b + 1, L))
#endif
        n = len(s.sched)
        s.n_enc = n // 2 if c['unet_skips'] else 0
        if c['unet_skips']:
            s.skip_weights = param(min(n // 2, n - n // 2), D)
#if ve
        if c['ve_layers']:
            s.ve_shared = VE(c)
        s.ve_layer_scales = nn.ParameterList(param(1) for _ in c['ve_layers'])
        s.ve_slot = {l: k for k, l in enumerate(c['ve_layers'])}
#endif
#if vres
        s.vrl_scales = nn.ParameterList(param(1) for _ in range(L - 1 if c['value_residual'] else 0))
#endif
#if untied
        if not c['tie_embeddings']:
            s.lm_head = Lin(V, D)
#endif
        s.rotary = Rotary(c['rope_dims'] or D // c['num_heads'], c['rope_base'], c['rope_train_seq_len'])

    def vextra(s, i, ve, v0):
        e = None
#if ve
        if ve is not None and i in s.ve_slot:
            e = ve * s.ve_layer_scales[s.ve_slot[i]].to(ve.dtype)
#endif
#if vres
        if v0 is not None and i > 0:
            r = v0 * s.vrl_scales[i - 1].to(v0.dtype)
            e = r if e is None else e + r
#endif
        return e

    def forward_hidden(s, idx):
        x = s.tok_emb(idx)
        if s.bigram is not None:
            x = x + s.bigram(idx)
        x = rms(x)
        if s.smear is not None:
            x = s.smear(x, idx)
        x0 = x
        cos, sin = s.rotary(idx.size(1), idx.device)
        ve = s.ve_shared(idx) if s.ve_shared is not None else None
        v0, skips = None, []
        for vi, li in enumerate(s.sched):
            if vi >= s.n_enc and skips:
                x = x + s.skip_weights[vi - s.n_enc].to(x.dtype)[None, None, :] * skips.pop()
            x, v_raw = s.blocks[li](x, x0, cos, sin, s.vextra(li, ve, v0))
#if vres
            if s.c['value_residual'] and li == 0 and v0 is None:
                v0 = v_raw
#endif
            if vi < s.n_enc:
                skips.append(x)
        return rms(x)

    def head(s, h):
        return s.lm_head(h) if s.lm_head is not None else s.tied(h)

    def tied(s, h):
        w = s.tok_emb.weight  # tiles of 256 rows, as golfpack's packed token table
        return torch.cat([F.linear(h, w[i:i + 256].to(h.dtype)) for i in range(0, w.shape[0], 256)], dim=-1)

    def logits(s, h):
        z = s.head(h)
        cap = s.c['logit_softcap']
#if softcap
        if cap:
            z = cap * torch.tanh(z / cap)
#endif
        return z.float()


def build_model(man, pay, cfg):
    """GPT with the artifact's weights: linear slots as golfpack.evaluate.packed_model builds them
    (float32 symbols x scales, LQER kept apart), everything else decoded by its scheme."""
    c = cfg or man['config']
    need(isinstance(c, dict), 'the artifact has no model config')
    model = GPT(c)
    tensors = decode_tensors(man, pay)
    slots = {n + '.weight' for n, m in model.named_modules() if isinstance(m, Lin) and m.bias is None}
    sd = model.state_dict()
    need(set(sd) == set(tensors), f'artifact tensors do not match the model: {sorted(set(sd) ^ set(tensors))[:4]}')
    new = {}
    for name, (t, arrs) in tensors.items():
        need(list(sd[name].shape) == list(t['shape']), f'{name}: shape {t["shape"]}, model expects {list(sd[name].shape)}')
        sc = t['scheme']
        packed = name in slots and sc['kind'] == 'int_rowscale' and len(t['shape']) == 2 and (
            'lowrank' not in sc or t['dtype'] == 'float32')
        new[name] = dense(t, arrs, cast=not packed, lowrank=not packed).float()
#if lowrank
        if packed and 'lowrank' in sc:
            m = model.get_submodule(name[:-7])
            m.A, m.B = factors(t, arrs)
#endif
    model.load_state_dict(new)
    return model.eval()
