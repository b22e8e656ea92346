"""Outgoing integrations of a location: Smappee-compatible local MQTT and Home Assistant discovery.

Opt-in per location (installation file ``integrations``, or the admin). The payload builders
(:mod:`.smappee`, :mod:`.homeassistant`) are pure functions of a :class:`.site.Site`, the live
values and the energy registers; :mod:`.pool` holds one background MQTT connection per broker;
:mod:`.publisher` connects them to the live values, relay changes and gateway events.
See docs/integrations.md.
"""
