"""The world model: six networks, task embedding, categorical support (knows no env)."""
from ezm.model.networks import count_parameters
from ezm.model.support import Support
from ezm.model.world_model import Inference, Prediction, WorldModel

__all__ = ["Inference", "Prediction", "Support", "WorldModel", "count_parameters"]
