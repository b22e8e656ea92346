"""Live values stay in the cache for every location, however many there are."""

from django.core.cache import cache

from metering import live


def test_the_live_values_of_a_thousand_locations_are_all_kept():
    # Each location has several cache entries (live values, the cards' totals); the local-memory
    # cache's default of 300 entries culled a third of them at random once full.
    locations = range(900_000, 901_000)
    try:
        for location_id in locations:
            cache.set(live.key(location_id), {"location": location_id, "t": 1.0}, timeout=60)
            cache.set(f"cards:pulses-today:{location_id}", {}, timeout=60)
        assert all(live.latest(location_id) == {"location": location_id, "t": 1.0} for location_id in locations)
    finally:
        cache.delete_many([live.key(location_id) for location_id in locations])
        cache.delete_many([f"cards:pulses-today:{location_id}" for location_id in locations])
