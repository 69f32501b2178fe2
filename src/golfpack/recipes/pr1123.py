"""PR 1123, HybridQuantGPT v6.1: U-Net, XSA, value residual, VE128, BigramHash; mixed int6/int5 +
rANS; legal score-first TTT. Seed: ../shared/seeds/003_36dd4d0f24e4a2f2.txt."""
from golfpack.recipes.base import CodecRecipe, EvalRecipe, Recipe

RECIPE = Recipe(
    name="pr1123", pr=1123, title="HybridQuantGPT v6.1 rANS + Legal TTT", tokenizer="sp1024",
    model=dict(vocab_size=1024, num_layers=11, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=3.0,
               unet_skips=True, xsa=True, value_residual=True, smear_gate=True, bigram_buckets=2048,
               bigram_dim=128, ve_layers=[9, 10], ve_dim=128, rope_dims=16, activation="leaky_relu2",
               leaky_slope=0.5, tie_embeddings=True, ln_scale=True, logit_softcap=15.0),
    train=dict(seq_len=1024, batch_tokens=524_288, steps=10_000, muon_momentum=0.95,
               muon_momentum_warmup_start=0.85, warmdown_steps=1750, swa_every=50, ema_decay=0.997),
    codec=CodecRecipe(bits="6,q=6,k=6,v=5,o=5,mlp=5,embed=6", method="rtn", clip="absmax", coders=("rans",)),
    eval=EvalRecipe(mode="sliding", seq_len=1024, stride=64, ttt="sgd", ttt_config=dict(
        sgd_lr=0.002, sgd_epochs=3, sgd_chunk_tokens=32_768, context=1024, chunk=64)),
    seed_val_bpb=1.1986, seed_artifact_bytes=15_132_719,
    differences=(
        "score-first TTT freeze_blocks 2 (the first two blocks frozen): golfpack's sgd TTT trains every block",
        "HMA (a variant of EMA, decay 0.997): golfpack's plain EMA; SWA (7 snapshots, steps 9700-10000) "
        "takes precedence over the EMA in golfpack, as in the seed's export",
        "the split of int6/int5 over Q/K, V/O, MLP and embeddings is not stated: Q/K int6, V/O int5, "
        "MLP int5, embeddings int6",
        "the seed's custom rANS coder: golfpack's order-0 rANS (rans)",
        "trained on a single RTX 3090 in the seed: the schedule here is the seed's step counts",
    ),
    notes=("other matrices (BigramHash / VE projections): int6 (not stated)", "model_dim 512, 8/4 heads and MLP 3x not stated (the 11-layer records' shape)",),
    tiny={"model": dict(num_layers=5, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=512,
                        bigram_dim=32, ve_layers=[3, 4], ve_dim=32, rope_dims=8)},
)
