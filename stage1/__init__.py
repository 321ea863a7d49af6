"""stage1: a small PID-1 supervisor for pods and containers."""
__version__ = "0.1.0"
