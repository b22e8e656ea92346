"""Load test of the production-like stack: ``bin/loadtest`` (``python -m tools.loadtest``).

Starts the ``bin/stack`` roles on loopback (2 web, N ingest workers, ingest_mqtt,
watch_gateways on PostgreSQL, Redis and a Mosquitto of its own), seeds K demo houses, and from
a separate process runs K gateways at one frame a second (binary over WebSocket, some JSON over
HTTP, some over MQTT), browser sockets receiving the live cards and a page prober. Prints the
figures every 10 s and a summary against issue 11's targets; bounded, stops by itself and
stops everything it started. See docs/deploy.md, "Load test".

Modules: :mod:`.frames` (the pre-encoded frames), :mod:`.stack` (the processes),
:mod:`.seed` (locations and users), :mod:`.load` (the load process), :mod:`.monitor` (CPU,
RSS, backlog), :mod:`.stats` (pure helpers), :mod:`.run` (the course of a run).
"""
