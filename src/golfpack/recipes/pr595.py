"""PR 595, Loqui Auris: 10L MLP3x SmearGate BigramHash(4096) + SWA; int5 MLP / int6 attention + fp16
passthrough + zstd-22; full AdamW TTT. Seed: ../shared/seeds/004_57662b541b0f2f15.txt."""
from golfpack.recipes.base import CodecRecipe, EvalRecipe, Recipe

RECIPE = Recipe(
    name="pr595", pr=595, title="Loqui Auris: 10L + SWA + Standard TTT", tokenizer="sp1024",
    model=dict(vocab_size=1024, num_layers=10, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=3.0,
               smear_gate=True, bigram_buckets=4096, bigram_dim=128, unet_skips=True, tie_embeddings=True),
    train=dict(seq_len=2048, batch_tokens=524_288, steps=0, minutes=10.0, matrix_lr=0.02, muon_momentum=0.99,
               muon_momentum_warmup_start=0.92, muon_momentum_warmup_steps=1500, weight_decay=0.04,
               embed_weight_decay=0.01, lr_warmup_steps=20, warmdown_steps=3000, swa_every=50),
    codec=CodecRecipe(bits="6,mlp=5,attn=6,embed=float16", method="rtn", clip="absmax", coders=("zstd",)),
    eval=EvalRecipe(mode="sliding", seq_len=2048, stride=64, ttt="sgd", ttt_config=dict(
        sgd_lr=0.0005, sgd_epochs=10, grad_clip=1.0, sgd_momentum=0.9, context=2048, chunk=64)),
    seed_val_bpb=1.1100, seed_artifact_bytes=15_690_000,
    differences=(
        "full TTT with AdamW (lr 5e-4, wd 0): golfpack's full-parameter TTT is SGD with momentum 0.9 at the "
        "seed's lr, epochs and clipping",
        "SWA: 29 checkpoints every 50 steps from 50% of training; golfpack's SWA snapshots only during "
        "the warmdown (every 50 steps)",
        "OrthoInit: golfpack initialises with its own (baseline) init",
        "BigramHash 'projection_dim 512': a 128-wide table projected to the model dim (512)",
    ),
    notes=("other matrices (the BigramHash projection): int6", "embeddings, norms and gates stay float: fp16 for the embedding tables, float32 for the "
           "1-D control tensors",),
    tiny={"model": dict(num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=512,
                        bigram_dim=32)},
)
