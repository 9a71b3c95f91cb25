"""What a model is, before anything serves it: its `model.yaml` (spec), the row schema and its
validators built from the input fields, the artefact's sha256 pin, and its pre/post hooks."""
