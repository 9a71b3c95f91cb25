"""Model versions over time: the repository on disk, the desired state every server process
converges to, and the manager that loads, switches and retires versions without dropping a
request."""
