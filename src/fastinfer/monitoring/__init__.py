"""Monitoring served models: reference statistics now, drift checks against them later."""

from __future__ import annotations

from fastinfer.monitoring.reference import (
    FORMAT_VERSION,
    REFERENCE_FILENAME,
    bin_counts,
    category_key,
    read_reference,
    reference_statistics,
    write_reference,
)

__all__ = [
    "FORMAT_VERSION",
    "REFERENCE_FILENAME",
    "bin_counts",
    "category_key",
    "read_reference",
    "reference_statistics",
    "write_reference",
]
