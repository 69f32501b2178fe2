"""golfpack.model: the configurable Parameter Golf GPT.

    GPTConfig            every architecture knob (config.py); GPTConfig() = the challenge baseline
    GPT                  the model (gpt.py; building blocks in layers.py)
    load / from_state_dict / infer_config / check_state_dict   checkpoint -> GPT (load.py)
"""
from golfpack.model.config import GPTConfig
from golfpack.model.gpt import GPT
from golfpack.model.load import check_state_dict, from_state_dict, infer_config, load

__all__ = ["GPTConfig", "GPT", "load", "from_state_dict", "infer_config", "check_state_dict"]
