"""The documented REST API under ``/api/v1/`` (docs/api.md), built with django-ninja.

:mod:`dashboard.api.main` holds the :class:`ninja.NinjaAPI` that ``config/urls.py`` mounts;
each resource has a router module of its own. The device ingest endpoints are not part of it
(:mod:`metering.ingest.http`): gateways speak their own protocol.
"""
