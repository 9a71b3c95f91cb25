"""The process model: the supervisor that loads models once and forks server processes
(`supervisor.py`, with `processes.py` and `pages.py`), each server process (`server.py`:
uvicorn around the app wired in `app.py`), the heartbeat board they write (`heartbeat.py`), the
health process that answers probes from it (`health.py`, judging by `verdict.py`), and the run
directory they share (`rundir.py`)."""
