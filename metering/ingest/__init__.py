"""The ingest service: what gateways send, from the transport to the stored bucket.

- Transports, thin adapters over :mod:`metering.ingest.gateway`: :mod:`~metering.ingest.http`,
  :mod:`~metering.ingest.ws`, :mod:`~metering.ingest.mqtt`; :mod:`~metering.ingest.gate` refuses
  oversized or unauthenticated HTTP bodies before they are read; :mod:`~metering.ingest.auth`
  checks gateway tokens; :mod:`~metering.ingest.frames` checks and decodes frames.
- :mod:`~metering.ingest.stream` hands frames to the worker that owns their Power Box
  (:mod:`~metering.ingest.worker`, in process without ``REDIS_URL``), which meters and stores
  them (:mod:`~metering.ingest.process`, :mod:`~metering.ingest.sequence`).
- :mod:`~metering.ingest.broker` delivers messages to gateways (relay commands);
  :mod:`~metering.ingest.watchdog` reports gateways gone quiet.

The pure meter is :mod:`metering.core`; this package only feeds it. See docs/ingest.md.
"""
