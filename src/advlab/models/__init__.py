"""Models as plain nn.Modules mapping a batch in [0, 1] to logits, found by name."""

from advlab.models import cnn, linear, maxout, mlp, rbf, szegedy  # noqa: F401  (registers the models)
from advlab.models.autoencoder import AutoencoderClassifier
from advlab.models.cnn import SmallCNN
from advlab.models.layers import Normalize, as_multiclass_logits
from advlab.models.linear import LogisticRegression, SoftmaxRegression
from advlab.models.maxout import MaxoutLinear, MaxoutNet
from advlab.models.mlp import MLP
from advlab.models.registry import ModelSpec, build_model, get_spec, model_names, register

__all__ = [
    "AutoencoderClassifier",
    "LogisticRegression",
    "MLP",
    "MaxoutLinear",
    "MaxoutNet",
    "ModelSpec",
    "Normalize",
    "SmallCNN",
    "SoftmaxRegression",
    "as_multiclass_logits",
    "build_model",
    "get_spec",
    "model_names",
    "register",
]
