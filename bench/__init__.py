"""The benchmark harness: our two streaming protocols against a bare Starlette broadcast (the floor)
and python-socketio (the peer), on one machine, server and client on separate cores. `python -m bench --help`."""
