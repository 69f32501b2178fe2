"""PR 596, DeepQuant V10b: 11L MLP3x BigramHash + SmearGate + U-Net, int6 + 4% pruning + zstd-22,
8-epoch LoRA TTT (q/v rank 8, head rank 16). Seed: ../shared/seeds/000_e162116b8a9f4d4a.txt."""
from golfpack.recipes.base import CodecRecipe, EvalRecipe, Recipe

RECIPE = Recipe(
    name="pr596", pr=596, title="DeepQuant V10b: 11L INT6 + 8ep LoRA TTT", tokenizer="sp1024",
    model=dict(vocab_size=1024, num_layers=11, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=3.0,
               bigram_buckets=2048, smear_gate=True, unet_skips=True, ln_scale=True, tie_embeddings=True),
    train=dict(seq_len=1024, batch_tokens=524_288, steps=0, minutes=10.0, warmdown_frac=0.2,
               ema_decay=0.999, swa_every=50),
    codec=CodecRecipe(bits="6,embed=6", method="rtn", clip="absmax", prune=0.04, coders=("zstd",)),
    eval=EvalRecipe(mode="doc_aware", seq_len=1024, stride=256, ttt="lora", ttt_config=dict(
        rank=8, targets=["q", "v", "lm_head"], epochs=8, lr=0.01, chunk=256, context=1024, doc_batch=64,
        max_doc_len=50_000, temperature=0.98, time_limit_s=570.0)),
    seed_val_bpb=0.6430, seed_artifact_bytes=15_730_000,
    differences=(
        "LoRA TTT rank: golfpack uses one rank for every target, so the LM head gets rank 8, not 16",
        "TTT bias tuning (per-block biases trained during TTT): golfpack's GPT has no biases; not reproduced",
        "TTT cosine lr decay within a document (min 0.1): golfpack's LoRA TTT uses a constant lr",
        "score-every-epoch: golfpack counts only the first, pre-update forward of each chunk (the legal "
        "score-first rule); later epochs are never rescored",
        "min_doc_length 512 (shorter docs skip TTT): golfpack adapts every document up to max_doc_len",
        "EMA every 10 steps: golfpack's EMA updates every step (decay 0.999 kept)",
        "SWA over 12 checkpoints in the final warmdown: golfpack averages one snapshot every swa_every steps "
        "of the warmdown; the step interval (50) is not stated by the seed",
        "Zigzag GPU load balancing: a scheduling detail with no effect on the result",
        "4% magnitude pruning is applied to the int6 symbols (the smallest-|w| nonzero symbols of each "
        "quantized tensor become 0), not to the float weights before quantization",
    ),
    notes=("'depth-scaled residuals' read as ln_scale (1/sqrt(layer+1)); BigramHash dim 128 (not stated)",
           "int6 clip not stated: per-row absmax", "TTT context 1024 (the training length; not stated)"),
    tiny={"model": dict(num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=512,
                        bigram_dim=32)},
)
