"""``python -m tests.dashboard.backfill_demo LOCATION_ID DAYS``: demo history for a dev server."""

from __future__ import annotations

import sys


def main() -> None:
    import django

    django.setup()
    from django.utils import timezone

    from devices.models import Location
    from metering.history import backfill
    from tests.dashboard.demo import history_rows

    location = Location.objects.get(pk=int(sys.argv[1]))
    written = backfill(location, history_rows(timezone.now(), float(sys.argv[2])))
    print(written)


if __name__ == "__main__":
    main()
