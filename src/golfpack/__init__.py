"""golfpack: artifact codec and evaluator for Parameter Golf language models.

Data flow, one subpackage per stage:

    checkpoint (golfpack.checkpoint)      read .pt / .safetensors / sharded / baseline .ptz
      -> plan + quantize (golfpack.codec)  symbols + scales per tensor
      -> entropy-code (golfpack.codec.coders, golfpack._C rANS)
      -> container (golfpack.codec.container, FORMAT.md)
      -> decode -> packed model (golfpack.model)
      -> eval / TTT (golfpack.evaluate)
"""

__version__ = "0.1.0"

from golfpack.errors import GolfpackError  # noqa: E402,F401
