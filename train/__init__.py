"""golfpack.train: the slim trainer that produces the checkpoints the codec consumes.

    train(model_config, train_config, data, out_dir, ...)   the loop (trainer.py)
    TrainConfig                                            optimizer / schedule / EMA / SWA / QAT keys (config.py)
    Muon, zeropower_via_newtonschulz5                      the matrix optimizer (muon.py)
"""
from golfpack.train.config import TrainConfig
from golfpack.train.muon import Muon, zeropower_via_newtonschulz5
from golfpack.train.trainer import train

__all__ = ["TrainConfig", "Muon", "zeropower_via_newtonschulz5", "train"]
