"""Post-training structural passes on ONNX weights."""
