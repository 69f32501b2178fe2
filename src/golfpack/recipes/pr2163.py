"""PR 2163: SP8192, XSA everywhere, parallel residuals, depth recurrence, leaky-relu^2, NEFTune,
z-loss; GPTQ int6/int7/int8 + LQER r4; phased LoRA-128 TTT (4 phases, prefix 3000).
Seed: ../shared/seeds/002_12bd0ebfa1775de3.txt."""
from golfpack.recipes.base import CodecRecipe, EvalRecipe, Recipe

RECIPE = Recipe(
    name="pr2163", pr=2163, title="SP8192 + NEFTune + Z-Loss + Phased-TTT", tokenizer="sp8192",
    model=dict(vocab_size=8192, num_layers=11, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=4.0,
               activation="leaky_relu2", leaky_slope=0.5, xsa=True, unet_skips=True, parallel_residual_start=8,
               rope_dims=16, rope_train_seq_len=2048, smear_gate=True, gated_attention=True, attn_gate_dim=12,
               recur_start=3, recur_end=5, recur_repeats=3, tie_embeddings=True, logit_softcap=30.0,
               ln_scale=True),
    train=dict(seq_len=2048, batch_tokens=524_288, steps=0, minutes=10.0, muon_backend_steps=5, beta1=0.9,
               beta2=0.99, embed_weight_decay=0.5, lr_warmup_steps=20, warmdown_frac=0.85, ema_decay=0.9965,
               neftune_alpha=5.0, z_loss=1e-4),
    codec=CodecRecipe(bits="6,embed=7,*.attn_gate.weight=8", method="gptq", clip="sdclip:12.85",
                      lqer_rank=4, lqer_top=3, lqer_bits=4,
                      coders=("raw", "rans", "rans_rc", "zstd", "brotli"), min_numel=4096),
    eval=EvalRecipe(mode="doc_aware", seq_len=2048, stride=512, ttt="phased", ttt_config=dict(
        rank=128, prefix_docs=3000, phases=4, context=2048, chunk=512)),
    seed_val_bpb=1.0603, seed_artifact_bytes=15_160_000,
    differences=(
        "depth recurrence switches on at 35% of training in the seed; golfpack's recurrence is static "
        "(layers 3-5 looped 3 times from step 0)",
        "warmdown min_lr 0.1: golfpack's warmdown decays to 0",
        "the Adam weight decay 0.5 applies to the embeddings; golfpack never decays the scalar/control group",
        "YaRN: golfpack's rope_train_seq_len NTK base stretch stands in for YaRN's interpolation",
        "'pergroup' compression: golfpack gives every stream the smallest of its coders",
        "LQER 'top-3 tensors': the three quantized tensors of largest predicted loss increase get rank 4 "
        "(the seed's ranking criterion is not stated)",
        "SmearGate 'not-BOS masking' and the sparse head-output gate: golfpack's SmearGate (BOS-fixed) and "
        "gated attention reading the first 12 channels",
    ),
    notes=("model_dim 512 and MLP 4x not stated (the SP8192 11-layer records' shape)",
           "phased TTT chunk 512 / context 2048 not stated"),
    tiny={"model": dict(num_layers=6, model_dim=64, num_heads=4, num_kv_heads=2, parallel_residual_start=4,
                        rope_dims=8, rope_train_seq_len=128, attn_gate_dim=8, recur_start=2, recur_end=3,
                        recur_repeats=2)},
)
