"""Daphne's ``runserver`` with :class:`config.server.InfinityServer` (large request-body pieces)."""

from daphne.management.commands.runserver import Command as DaphneRunserver

from config.server import InfinityServer


class Command(DaphneRunserver):
    server_cls = InfinityServer
