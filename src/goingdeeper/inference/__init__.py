"""Speed and deployment: the fused inference form of any registered model, graph export
(`torch.export`, ONNX), ONNX Runtime and OpenVINO runtimes, int8 quantization, timing.

    from goingdeeper.inference import optimize_for_inference
    fast = optimize_for_inference(model)   # BN folded, Inception 1x1s fused, channels-last
"""

from .export import (
    cache_dir,
    export_onnx,
    export_program,
    onnx_program,
    onnxruntime_model,
    torchscript,
    write_onnx,
    write_program,
    write_torchscript,
)
from .fuse import (
    FusedInception,
    conv_bn_pairs,
    fold_batchnorm,
    fold_bn_into_conv,
    fuse_inception_1x1,
    unfuse_inception_1x1,
)
from .optimize import InferenceModel, deployable, for_inference, optimize_for_inference
from .quantize import calibration_images, image_batches, quantize_onnx
from .runtime import OnnxRuntimeModel, OpenVINOModel
from .timing import machine, sgemm_gmacs, time_call

__all__ = [
    "FusedInception",
    "InferenceModel",
    "OnnxRuntimeModel",
    "OpenVINOModel",
    "cache_dir",
    "calibration_images",
    "conv_bn_pairs",
    "deployable",
    "export_onnx",
    "export_program",
    "fold_batchnorm",
    "fold_bn_into_conv",
    "for_inference",
    "fuse_inception_1x1",
    "image_batches",
    "machine",
    "onnx_program",
    "onnxruntime_model",
    "optimize_for_inference",
    "quantize_onnx",
    "sgemm_gmacs",
    "time_call",
    "torchscript",
    "unfuse_inception_1x1",
    "write_onnx",
    "write_program",
    "write_torchscript",
]
