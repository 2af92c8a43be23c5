"""Gradient Explosion Lab's training engine: configs, models, the instrumented step and the runner.

Usable from the dashboard, the CLI (``python -m training``), tests or a notebook; it never imports streamlit.
"""

from .config import Config, ConfigError, from_dict, from_preset, from_query
from .engine import StepRecord, Trainer, best_device
from .runner import Runner

__all__ = ["Config", "ConfigError", "Runner", "StepRecord", "Trainer", "best_device", "from_dict", "from_preset",
           "from_query"]
