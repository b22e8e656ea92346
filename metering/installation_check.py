"""The installer's actions on the installation check: apply a suggested fix, sign the installation off.

:mod:`metering.validation` observes the live frames and judges every CT; this module is what
the installer does with its verdicts, below any page: :func:`apply_fix` edits a CT's
configuration (or records that the clamp was turned) and restarts the check,
:func:`sign_off_installation` stores the commissioning report. :func:`current_findings` gives
the verdicts that still describe the configuration. Pages render; they learn of a restart
through :data:`check_restarted`, as they learn of a switched relay through
:data:`metering.relays.relay_changed`.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal

from devices.installation import clean_with_rules, export_installation
from devices.models import CommissioningReport, Event, LoadCt, Location, support_note
from metering import live, validation

log = logging.getLogger(__name__)

check_restarted = Signal()  # sender=location id: the check of the location starts afresh

# The verdicts about one CT (metering.commissioning.findings.KINDS), and how a refusal names them.
CT_KINDS = {
    "ok": "ok",
    "phase": "wrong phase",
    "reversed": "reversed",
    "no_current": "no current",
    "low_current": "too little current to judge",
    "inconsistent": "inconsistent",
}
# How long the restart of a check is remembered (a newer frame normally arrives within a second).
RESTART_MEMORY_S = 120


class FixRefused(Exception):
    """A fix that cannot be applied; nothing was changed. The message says why."""


# ----------------------------------------------------------------------------- restarts


def _restart_key(location_id: int) -> str:
    return f"validate:restarted:{location_id}"


def mark_restarted(location_id: int, values: dict | None) -> None:
    """Remember that the check of this location starts afresh (a fix was applied, a clamp turned).

    The live values already stored (``values``) still carry the old observation's verdicts:
    until a newer frame than theirs is published, :func:`current_findings` has none and the page
    says "the check starts again". Frame times are compared with frame times, so the gateway's
    clock does not matter.
    """
    if values and values.get("t") is not None:
        cache.set(_restart_key(location_id), float(values["t"]), timeout=RESTART_MEMORY_S)


def restarting(location_id: int, values: dict | None) -> bool:
    """True while ``values`` are from before the last restart of the check."""
    restarted_at = cache.get(_restart_key(location_id))
    return bool(values) and restarted_at is not None and (values.get("t") or 0.0) <= restarted_at


def restart(location_id: int) -> None:
    """Start the check afresh and tell whoever shows it (:data:`check_restarted`)."""
    validation.reset(location_id)
    mark_restarted(location_id, live.latest(location_id))
    for receiver, outcome in check_restarted.send_robust(sender=location_id):
        if isinstance(outcome, Exception):
            log.error("check_restarted receiver %r failed", receiver, exc_info=outcome)


# ----------------------------------------------------------------------------- verdicts


def configured_cts(location: Location) -> list[LoadCt]:
    """The location's load CTs in the order of its loads."""
    return list(
        LoadCt.objects.filter(load__location=location)
        .select_related("load", "ct_input__module")
        .order_by("load__position", "load__pk", "position", "pk")
    )


def _is_stale(verdict: dict, load_ct: LoadCt | None) -> bool:
    """A phase suggestion the configuration already follows: measured before the last change."""
    return (
        load_ct is not None
        and verdict["kind"] == "phase"
        and verdict.get("suggest") == load_ct.phase
        and not verdict.get("suggest_reversed")
    )


def current_findings(location: Location, values: dict | None, load_cts: list[LoadCt] | None = None) -> list[dict]:
    """The validation's verdicts (SPEC 5.3 ``validation``) that still describe the configuration.

    Empty while the stored values predate a restart of the check (:func:`restarting`); without a
    phase suggestion the configuration already follows (a frame measured before a fix).
    """
    if not values or restarting(location.pk, values):
        return []
    by_ref = {lc.ct_input.ref: lc for lc in (configured_cts(location) if load_cts is None else load_cts)}
    return [f for f in values.get("validation") or [] if not _is_stale(f, by_ref.get(f["ct"]))]


def current_verdict(location: Location, ct: str, values: dict | None) -> dict | None:
    """The validation's present verdict on ``ct``, or None (none yet, or the check just restarted)."""
    return next((v for v in current_findings(location, values) if v["ct"] == ct and v["kind"] in CT_KINDS), None)


def _describe(verdict: dict | None) -> str:
    if verdict is None:
        return "no verdict yet"
    label = CT_KINDS[verdict["kind"]]
    if verdict["kind"] == "phase" and verdict.get("suggest"):
        label += f", configure {verdict['suggest']}"
    return label


# ----------------------------------------------------------------------------- the installer's actions


def apply_fix(
    load_ct: LoadCt,
    action: str,
    *,
    phase: str = "",
    flip: bool = False,
    user,
    values: dict | None,
    support: bool = False,
    shown: tuple[str, bool] | None = None,
) -> Event:
    """Apply one of the validation's fixes to ``load_ct`` and log it; returns the Event.

    The event names ``user``; with ``support``, adds that they are support staff who is no member.

    ``shown``: the CT's (phase, reversed) on the page the fix was chosen on; refused if it
    changed since. The fix must be what the check says now (a suggestion from a page shown before the check
    changed its mind, or before someone else changed the CT, is refused) and the edited CT must
    pass the installation rules (:func:`devices.installation.clean_with_rules`).
    ``phase`` moves the CT to ``phase`` (and flips *reversed* when ``flip``); ``reverse`` flips
    *reversed*; ``turned`` changes nothing (the installer turned the clamp). The observation
    restarts after the commit either way.

    Raises
    ------
    FixRefused
        Nothing was changed; the message says why.
    """
    location = load_ct.load.location
    ref = load_ct.ct_input.ref
    if shown is not None and (load_ct.phase, load_ct.reversed) != shown:
        now = f"{load_ct.phase}{', reversed' if load_ct.reversed else ''}"
        raise FixRefused(
            f"{ref} was changed since this suggestion was shown (it is now on {now}). Nothing was changed."
        )
    verdict = current_verdict(location, ref, values)
    wanted = "phase" if action == "phase" else "reversed"
    if (
        verdict is None
        or verdict["kind"] != wanted
        or (action == "phase" and (verdict.get("suggest") != phase or bool(verdict.get("suggest_reversed")) != flip))
    ):
        raise FixRefused(
            f"The check does not suggest this for {ref} any more (it now says: {_describe(verdict)}). "
            "Nothing was changed."
        )
    before = {"phase": load_ct.phase, "reversed": load_ct.reversed}
    confidence = f"suggested by validation, confidence {verdict['confidence']:.2f}"
    if support:
        confidence += "; support staff, not a member"
    who = user.get_username()
    if action == "turned":
        kind = Event.VALIDATION
        message = f"{ref} ({load_ct.load.name}): clamp turned around by {who} ({confidence}); the check starts again."
    else:
        if action == "phase":
            load_ct.phase = phase
        if flip or action == "reverse":
            load_ct.reversed = not load_ct.reversed
        try:
            clean_with_rules(load_ct)
        except ValidationError as refused:
            raise FixRefused(f"{ref} was not changed: {' '.join(refused.messages)}") from None
        kind = Event.CONFIGURATION
        changes = []
        if load_ct.phase != before["phase"]:
            changes.append(f"moved from {before['phase']} to {load_ct.phase}")
        if load_ct.reversed != before["reversed"]:
            changes.append("set reversed" if load_ct.reversed else "no longer reversed")
        message = f"{ref} ({load_ct.load.name}) {' and '.join(changes)} by {who} ({confidence})."
    with transaction.atomic():
        if kind == Event.CONFIGURATION:
            load_ct.save(update_fields=["phase", "reversed"])
        event = Event.objects.create(
            location=location,
            kind=kind,
            module=ref,
            message=message,
            data={
                "ct": ref,
                "action": action,
                "before": before,
                "after": {"phase": load_ct.phase, "reversed": load_ct.reversed},
                "finding": verdict,
                "by": user.get_username(),
                **({"support": True} if support else {}),
            },
        )

        transaction.on_commit(lambda: restart(location.pk))
    return event


def sign_off_installation(
    location: Location, user, notes: str, values: dict | None, support: bool = False
) -> CommissioningReport:
    """Store the commissioning report: the installation file, every verdict and the live values now.

    Open findings do not prevent a sign-off; the report shows them. The event names ``user``;
    with ``support``, as support staff who is no member of the location.
    """
    verdicts = current_findings(location, values)
    with transaction.atomic():
        report = CommissioningReport.objects.create(
            location=location,
            signed_by=user,
            signed_by_name=user.get_full_name() or user.get_username(),
            notes=notes,
            installation=export_installation(location),
            verdicts=verdicts,
            live=values,
        )
        open_count = len(report.open_findings)
        Event.objects.create(
            location=location,
            kind=Event.VALIDATION,
            message=f"Installation signed off by {support_note(user) if support else user.get_username()}"
            + (f" with {open_count} open finding{'s' if open_count != 1 else ''}" if open_count else "")
            + ".",
            data={
                "report": report.pk,
                "open_findings": open_count,
                "by": user.get_username(),
                **({"support": True} if support else {}),
            },
        )
    return report
