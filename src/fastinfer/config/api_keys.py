"""The API keys a deployment configures: a name, the key's sha256, its scopes and limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The scopes an API key may hold (security/keys.py checks them; the routes declare their need).
Scope_ = Literal["predict", "admin", "metrics"]
PREDICT: Scope_ = "predict"
ADMIN: Scope_ = "admin"
METRICS: Scope_ = "metrics"


class ApiKeySpec(BaseModel):
    """One configured key: its name, the sha256 of the key, what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Shown in logs and metrics.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the key.")
    scopes: list[Scope_] = Field(default_factory=lambda: [PREDICT], min_length=1)
    models: list[str] | None = Field(
        default=None, description="The models this key may use; absent: every model."
    )
    rate: float | None = Field(default=None, gt=0, description="Requests a second (average).")
    burst: float | None = Field(default=None, ge=1, description="Requests at once (default: rate).")
    daily_quota: int | None = Field(
        default=None,
        ge=1,
        description="Requests a day: a bucket of this size refilled evenly over 24 hours.",
    )

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
