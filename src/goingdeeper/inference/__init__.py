"""Speed and deployment: the fused inference form of any registered model, ONNX export,
ONNX Runtime and OpenVINO runtimes, int8 quantization, and the `bench` timings.

    from goingdeeper.inference import optimize_for_inference
    fast = optimize_for_inference(model)   # BN folded, Inception 1x1s fused, channels-last
"""

from .deploy import onnxruntime_model, write_onnx, write_program
from .fuse import (
    FusedInception,
    conv_bn_pairs,
    fold_batchnorm,
    fuse_inception_1x1,
    unfuse_inception_1x1,
)
from .quantize import calibration_images, quantize_onnx
from .runtime import (
    InferenceModel,
    OnnxRuntimeModel,
    OpenVINOModel,
    example_input,
    optimize_for_inference,
)

__all__ = [
    "FusedInception",
    "InferenceModel",
    "OnnxRuntimeModel",
    "OpenVINOModel",
    "calibration_images",
    "conv_bn_pairs",
    "example_input",
    "fold_batchnorm",
    "fuse_inception_1x1",
    "onnxruntime_model",
    "optimize_for_inference",
    "quantize_onnx",
    "unfuse_inception_1x1",
    "write_onnx",
    "write_program",
]
