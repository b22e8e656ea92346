"""The load test's locations and users, written to the stack's database before it starts.

K copies of the demo house (``devices/demo/demo_installation.json``, serials made unique per
location) through the installation import every installer uses, each with a fresh gateway
token; one owner per watched location, signed in once, whose session cookie that location's
browsers send. Runs in the load test's own process, with Django set up on the stack's database.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.loadtest.frames import installation


@dataclass
class Site:
    index: int
    location_id: int
    token: str
    gateway_serial: str
    powerbox_serial: str
    doc: dict


def setup_django(env: dict[str, str]) -> None:
    import os

    import django

    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    django.setup()


def seed_sites(count: int) -> list[Site]:
    """``count`` demo houses, each with its gateway's token."""
    from django.db import transaction

    from devices.installation import import_installation

    sites = []
    with transaction.atomic():
        for index in range(count):
            doc = installation(index)
            result = import_installation(doc, rotate_token=True)
            sites.append(
                Site(
                    index,
                    result.location.pk,
                    result.gateway_token,
                    doc["gateway"]["serial"],
                    doc["powerbox"]["serial"],
                    doc,
                )
            )
    return sites


def sign_in_owners(sites: list[Site]) -> dict[int, str]:
    """An owner for each site, signed in: location id -> the owner's session cookie."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.test import Client

    from devices.models import Membership

    user_model = get_user_model()
    cookies = {}
    with transaction.atomic():
        for site in sites:
            owner = user_model.objects.create_user(f"load-owner-{site.index:04d}")  # no password: signed in below
            Membership.objects.create(location_id=site.location_id, user=owner, role=Membership.OWNER)
            browser = Client()
            browser.force_login(owner)
            cookies[site.location_id] = browser.cookies["sessionid"].value
    return cookies
