"""Where predictions run: off the event loop, on workers dedicated to inference."""

from fastinfer.engine.threads import ThreadEngine

__all__ = ["ThreadEngine"]
