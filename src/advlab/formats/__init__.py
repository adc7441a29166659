"""Networks and properties in the verification community's exchange formats, read without
running code from the file: ONNX graphs (`load_onnx`, a converter for a listed operator set)
and VNN-LIB properties (`read_vnnlib`, the subset the VNN-COMP benchmarks use)."""

from advlab.formats.onnx import OPERATORS, OnnxModel, UnsupportedOnnxError, load_onnx
from advlab.formats.vnnlib import Property, read_vnnlib, parse_vnnlib

__all__ = ["OPERATORS", "OnnxModel", "Property", "UnsupportedOnnxError", "load_onnx", "parse_vnnlib", "read_vnnlib"]
