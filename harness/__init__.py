"""PEFT benchmark harness: controlled comparisons of LoRA and its family."""
__version__ = "0.3.0"
