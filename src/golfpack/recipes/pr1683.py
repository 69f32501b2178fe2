"""PR 1683: 13L GQA 8/4, partial RoPE, gated attention, value residual, VE; QAT int4 MLP / int5 attn;
GPTQ; qTTT; ANS/brotli per tensor. Seed: ../shared/seeds/001_0b45cd623d3d056a.txt."""
from golfpack.recipes.base import CodecRecipe, EvalRecipe, Recipe

RECIPE = Recipe(
    name="pr1683", pr=1683, title="13L int4 MLP + qTTT + QAT + ANS hybrid", tokenizer="sp1024",
    model=dict(vocab_size=1024, num_layers=13, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=3.0,
               rope_dims=16, tie_embeddings=True, gated_attention=True, value_residual=True,
               bigram_buckets=2048, ve_layers=[11, 12], ve_dim=96, unet_skips=True),
    train=dict(seq_len=2048, batch_tokens=524_288, steps=0, minutes=10.0, matrix_lr=0.025, muon_momentum=0.99,
               weight_decay=0.04, warmdown_steps=3500, ema_decay=0.997, swa_every=200,
               qat_bits={"mlp": 4, "attn": 5}, qat_start=0.85),
    codec=CodecRecipe(bits="6,mlp=4,attn=5,embed=8", method="gptq", clip="mse", coders=("rans", "brotli")),
    eval=EvalRecipe(mode="sliding", seq_len=2048, stride=256, ttt="q", ttt_config=dict(
        sgd_lr=0.002, sgd_epochs=3, context=2048, chunk=256)),
    seed_val_bpb=1.1280, seed_artifact_bytes=15_350_000,
    differences=(
        "qTTT trains the 'qo_bank' (Q and O projections): golfpack's q method trains the Q projections only",
        "eval_length 32000 and fused TTT + sliding eval: golfpack scores TTT on document-aware chunks of "
        "`context` (2048) tokens and the sliding eval at seq_len 2048, stride 256",
        "QAT precompile warmup (a torch.compile stall workaround): no effect on the result; golfpack's QAT "
        "switches on at qat_start",
        "'late QAT int4 on the whole model': golfpack's QAT uses the per-class bits (MLP 4, attention 5)",
        "Adaptive Hessian-weighted GPTQ auto-clip over sigma candidates: golfpack's 'mse' clip is a "
        "Hessian-weighted MSE search over clip values, the closest equivalent",
        "training-only document-boundary attention (varlen): golfpack trains on packed windows",
        "warmdown_steps 3500 applies to a step budget; under a time budget golfpack's warmdown_frac applies",
    ),
    notes=("other matrices (BigramHash / VE projections): int6 (not stated)", "MLP multiplier not stated: 3x (13 layers at 512 fit 15.35 MB only near int4/int5)",
           "BigramHash 'dimensions 2048' read as 2048 buckets; VE128 'dimensions 96' as ve_dim 96 on the "
           "last two layers (layers not stated)", "embeddings: int8 (not stated)"),
    tiny={"model": dict(num_layers=5, model_dim=64, num_heads=4, num_kv_heads=2, rope_dims=8,
                        bigram_buckets=512, bigram_dim=32, ve_layers=[3, 4], ve_dim=24)},
)
