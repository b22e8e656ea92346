"""Per-user API tokens for the REST API (docs/api.md, "Authentication").

A token is shown once, when it is created; only its SHA-256 hash is stored, as for gateway
tokens (:func:`devices.models.hash_token`). Revoking deletes the row, so the next request with
that token is refused.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from devices.models import hash_token

# A user's tokens are for a few scripts and integrations, not one per request.
MAX_TOKENS_PER_USER = 10
NAME_MAX_LENGTH = 80
# Told apart from a gateway's token at a glance (in a script, a log, a leaked file).
TOKEN_PREFIX = "idk_"
# ``last_used_at`` is written at most this often per token, so reads do not become writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenQuerySet(models.QuerySet):
    def for_user(self, user) -> ApiTokenQuerySet:
        return self.filter(user=user).order_by("-created_at", "-pk")


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=NAME_MAX_LENGTH, help_text="What the token is for, e.g. 'Home Assistant'.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters after the prefix, to tell tokens apart on the page without revealing them.
    hint = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}{self.hint}…) of {self.user}"

    @classmethod
    def issue(cls, user, name: str) -> tuple[ApiToken, str]:
        """A new token for ``user``: the row and the token itself, which is never shown again.

        Raises :class:`~django.core.exceptions.ValidationError` for an empty or too long name,
        or when the user already holds :data:`MAX_TOKENS_PER_USER` tokens.
        """
        name = (name or "").strip()
        if not name:
            raise ValidationError("Give the token a name, e.g. what will use it.", code="required")
        if len(name) > NAME_MAX_LENGTH:
            raise ValidationError(
                f"A token's name has at most {NAME_MAX_LENGTH} characters, not {len(name)}.", code="max_length"
            )
        secret = secrets.token_urlsafe(32)
        with transaction.atomic():
            # Lock the user's row so two simultaneous requests cannot both pass the cap.
            get_user_model().objects.select_for_update().filter(pk=user.pk).first()
            if cls.objects.filter(user=user).count() >= MAX_TOKENS_PER_USER:
                raise ValidationError(
                    f"You already have {MAX_TOKENS_PER_USER} API tokens; revoke one you no longer use first.",
                    code="too_many",
                )
            token = TOKEN_PREFIX + secret
            row = cls.objects.create(user=user, name=name, token_hash=hash_token(token), hint=secret[:6])
        return row, token

    @classmethod
    def user_for(cls, token: str):
        """The active user holding ``token``, or None (unknown, revoked, or the user is inactive).

        Records the use (at most every :data:`LAST_USED_RESOLUTION`).
        """
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = cls.objects.select_related("user").filter(token_hash=hash_token(token)).first()
        if row is None or not row.user.is_active:
            return None
        now = timezone.now()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            cls.objects.filter(pk=row.pk).update(last_used_at=now)
        return row.user
