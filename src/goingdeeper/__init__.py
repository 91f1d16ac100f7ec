"""goingdeeper: GoogLeNet (Inception v1) and the classic CNN line, exactly as published."""

from .analysis import model_costs
from .errors import GoingDeeperError
from .factory import create_model
from .models import GoogLeNet, GoogLeNetOutputs
from .preprocess import Preprocessing
from .registry import ModelCard, build_model, list_models, model_card

__version__ = "0.1.0"

__all__ = [
    "GoingDeeperError",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "ModelCard",
    "Preprocessing",
    "build_model",
    "create_model",
    "list_models",
    "model_card",
    "model_costs",
]
