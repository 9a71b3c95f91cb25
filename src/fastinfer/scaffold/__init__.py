"""`fastinfer init`: inspect an artefact (and a sample of its data), write `model.yaml` and the
reference statistics, and self-test the result before installing it."""
