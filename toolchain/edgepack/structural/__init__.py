"""Structural compression: pruning, low-rank factorization and distillation of the SOURCE model.

These passes change what the network computes (fewer channels, thinner matrices, retrained
weights), so they run before conversion, on the model the user gave, in its own framework: a
Keras source is rebuilt and fine-tuned in Keras, a PyTorch ExportedProgram edited and fine-tuned
in PyTorch, a SavedModel pruned and fine-tuned in TensorFlow on its restored variables; an ONNX
source, which cannot be trained here, is pruned and factorized post-training on its weights.
The build then converts and quantizes the new source, and judges every deliverable against the
ORIGINAL model's outputs, so the accuracy budget covers the whole chain. Entry point:
``passes.run_passes``.

Each framework's chain and graph edits live in its subpackage (keras/, torch/, savedmodel/,
onnx/); what they share is here, framework-free: magnitude masks and channel plans
(magnitude.py), the truncated-SVD rank rule (svd.py), the distillation schedule and targets
(training.py), and how a stage is measured (stages.py, cost.py).
"""
