"""clawgate: a personal AI-assistant gateway whose conversations cannot wedge."""

__version__ = "0.1.0"
