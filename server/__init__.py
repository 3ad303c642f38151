"""How this process is run: settings from the environment (`config`), logging (`logging_setup`), the guards in
front of the app (`http_guard`, `websocket_guard`), uvicorn's hardened protocols (`uvicorn_protocols`, used by
`cli.py serve`) and the demo data (`demo`)."""
