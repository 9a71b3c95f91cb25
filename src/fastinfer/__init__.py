"""fastinfer: turn a trained model into a fast, hardened inference microservice."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastinfer")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
