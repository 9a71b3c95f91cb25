"""Authentication with scoped API keys, per-key rate limits, and the start-up exposure check."""
