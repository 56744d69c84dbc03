"""Compression passes. Quantization is done by each format's own tool, at its conversion edge."""
