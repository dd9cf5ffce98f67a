"""ezm: EfficientZero-Multitask in PyTorch."""
__version__ = "0.1.0"
