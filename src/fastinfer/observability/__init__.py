"""Logs now; metrics, prediction logs and drift as they arrive."""
