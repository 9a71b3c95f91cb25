"""The process model: the supervisor that loads models once and forks server processes, each
server process (uvicorn around the app wired in `app.py`), the health process that answers probes
from the workers' heartbeats, and the run directory they share."""
