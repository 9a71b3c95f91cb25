"""The servers fastinfer is compared with: a naive FastAPI app and a raw ASGI HTTP floor."""
