"""Deployment: export to ONNX and run the exported graphs."""
