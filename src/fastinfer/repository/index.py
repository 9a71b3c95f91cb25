"""The v2 repository extension's index, for every transport (REST and gRPC): every version
loaded, on disk or unloaded by an operator, with its state (READY, LOADING, UNAVAILABLE)."""

from __future__ import annotations

from fastinfer.errors import public_reason
from fastinfer.repository.layout import scan_repository, version_key
from fastinfer.repository.manager import ModelManager
from fastinfer.repository.registry import ModelRegistry


def repository_index(
    registry: ModelRegistry, manager: ModelManager, *, ready_only: bool = False
) -> list[dict[str, str]]:
    """One entry (name, version, state, reason) per version, by name then version order."""
    on_disk = scan_repository(manager.repository) if manager.repository is not None else {}
    index: list[dict[str, str]] = []
    for name in sorted(set(registry.names()) | set(on_disk) | set(registry.unloaded)):
        group = registry.get(name)
        loaded = group.versions if group is not None else {}
        held = registry.unloaded.get(name, {})
        versions = set(loaded) | set(on_disk.get(name, {})) | set(held)
        for version in sorted(versions, key=version_key):
            model = loaded.get(version)
            record = held.get(version)
            if model is not None and model.serving:
                entry = {"name": name, "version": version, "state": "READY", "reason": ""}
            elif model is not None and model.state.value == "loading":
                entry = {"name": name, "version": version, "state": "LOADING", "reason": ""}
            elif model is None and record is not None:
                # Who, for admins only (GET /admin/models): not an admin key's name to any key.
                reason = f"unloaded by an operator at {record.at.isoformat()}"
                entry = {"name": name, "version": version, "state": "UNAVAILABLE", "reason": reason}
            else:
                reason = (model.reason if model else None) or registry.failures.get(
                    (name, version), "not loaded"
                )
                entry = {
                    "name": name,
                    "version": version,
                    "state": "UNAVAILABLE",
                    "reason": public_reason(reason),
                }
            if not ready_only or entry["state"] == "READY":
                index.append(entry)
    return index
