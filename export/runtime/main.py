# Entry point: read the environment like the challenge's train_gpt.py, decode the artifact beside
# this script, score, and end with one line `val_loss:<float> val_bpb:<float>`.


def env(k, d, f=int):
    v = os.environ.get(k)
    if v is None or v == '':
        return d
    try:
        return f(v)
    except ValueError:
        raise Bad(f'{k}={v!r} is not a valid value')


def main():
    t0 = time.perf_counter()
    world, rank = env('WORLD_SIZE', 1), env('RANK', 0)
    say = (lambda m: print(m, flush=True)) if rank == 0 else (lambda m: None)
    dev = torch.device(os.environ.get('EVAL_DEVICE') or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if dev.type == 'cuda':
        need(torch.cuda.is_available(), 'EVAL_DEVICE=cuda but CUDA is not available')
        dev = torch.device('cuda', env('LOCAL_RANK', 0))
        torch.cuda.set_device(dev)
    if world > 1:
        torch.distributed.init_process_group('nccl' if dev.type == 'cuda' else 'gloo')
    prec = os.environ.get('EVAL_PRECISION', 'auto')
    bf = prec == 'bf16' or (prec == 'auto' and dev.type == 'cuda')
    amp = (lambda: torch.autocast(dev.type, torch.bfloat16)) if bf else __import__('contextlib').nullcontext
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), ARTIFACT)
    man, pay = read_artifact(path)
    model = build_model(man, pay, CFG).to(dev)
    V = model.c['vocab_size']
    say(f'artifact:{ARTIFACT} bytes:{os.path.getsize(path)} decode_s:{time.perf_counter() - t0:.2f}')
    data = os.environ.get('DATA_PATH', './data/datasets/fineweb10B_sp1024')
    pattern = os.path.join(data, 'fineweb_val_*.bin')
    tok = load_tokens(pattern)
    tabs = byte_tables(os.environ.get('TOKENIZER_PATH', './data/tokenizers/fineweb_1024_bpe.model'), V)
    bad = np.flatnonzero(tok >= tabs[3])
    if bad.size:
        raise Bad(f'shard token {int(tok[bad[0]])} at position {int(bad[0])} is not a piece of the tokenizer '
                  f'({tabs[3]} pieces): the shards were made with another tokenizer')
    mx = env('EVAL_MAX_TOKENS', None)
    if mx is not None:
        need(mx >= 1, 'EVAL_MAX_TOKENS must be >= 1')
        tok = tok[:mx + 1]
    need(tok.size >= 2, 'need at least 2 validation tokens')
    say(f'val_loader:shards pattern={pattern} tokens:{tok.size - 1}')
    L, S, bos = env('VAL_SEQ_LEN', SEQ), env('EVAL_STRIDE', STRIDE), env('BOS_ID', model.c['bos_id'])
    mode = os.environ.get('EVAL_MODE', MODE)
#if lora|sgd
    if TTT is not None:
        need(world == 1, 'TTT runs in one process (golfpack eval --ttt does too)')
        cfg = dict(TTT)
        cfg['context'] = env('VAL_SEQ_LEN', cfg['context'])
        cfg['chunk'] = env('EVAL_STRIDE', cfg['chunk'])
        say(f"ttt:{cfg['method']} context:{cfg['context']} chunk:{cfg['chunk']}")
        loss, bpb, n, nb = evaluate_ttt(model, tok, tabs, cfg, dev, amp, bos)
#endif
    if TTT is None:
        if mode == 'plain' or (mode == 'doc-aware' and not os.environ.get('EVAL_STRIDE') and STRIDE is None):
            S = None
        need(L >= 1 and (S is None or 1 <= S <= L), f'need 1 <= EVAL_STRIDE <= VAL_SEQ_LEN (got {S}, {L})')
        say(f'eval:{mode} seq_len:{L} stride:{S} world_size:{world} device:{dev}')
        loss, bpb, n, nb = evaluate(model, tok, tabs, mode, L, S, env('EVAL_BATCH', 16), dev, amp, bos)
    dump = os.environ.get('EVAL_DUMP')
    if dump and world == 1:
        np.save(dump, LOSSES[0])  # per-target losses (index = stream position), for golfpack check
    say(f'scored_tokens:{n} scored_bytes:{nb} eval_s:{time.perf_counter() - t0:.2f}')
    if world > 1:
        torch.distributed.destroy_process_group()
    say(f'val_loss:{loss:.10f} val_bpb:{bpb:.10f}')


if __name__ == '__main__':
    try:
        torch.set_num_threads(env('EVAL_THREADS', torch.get_num_threads()))
        main()
    except Bad as e:
        print(f'train_gpt.py: error: {e}', file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        print(f'train_gpt.py: error: {type(e).__name__}: {e}', file=sys.stderr)
        sys.exit(2)
