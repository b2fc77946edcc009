"""``msclkid doctor [--fix [--yes]]``: the account's health in one checklist (``ops.doctor`` holds the checks).

Each line is ``✔`` (ok), ``✘`` (fail) or ``!`` (warning) with what to do; the exit status is 1 when a check
fails.  ``--fix`` offers the repairs it can make (auto-tagging through ``SetAccountProperties``, the outbox
file's permissions), each after a confirmation that ``--yes`` answers; nothing else is changed.

``flask msclkid doctor`` and ``python manage.py msclkid doctor`` are this command under the Flask group and the
Django management command, each with the application's own settings as the command environ.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from msclkid_middleware.cli.common import command_environ, store_option

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.ops.doctor import Check, DoctorReport

__all__ = ["doctor", "render_checks"]

_MARKS = {"ok": "✔", "fail": "✘", "warn": "!"}
_QUESTIONS = {
    "auto_tagging": "Turn on msclkid auto-tagging (MSCLKIDAutoTaggingEnabled=True) for account {account}?",
    "store_permissions": "Make the outbox file readable by its owner only (chmod 600)?",
}


def render_checks(checks: tuple[Check, ...] | list[Check]) -> str:
    """The checklist as text: one line per check, the action indented below a failure or warning."""
    lines = []
    width = max((len(c.name) for c in checks), default=0)
    for check in checks:
        lines.append(f"{_MARKS[check.status]} {check.name:<{width}}  {check.summary}")
        if check.status != "ok" and check.action:
            lines.append(f"  {'':<{width}}  → {check.action}")
    return "\n".join(lines)


def _summary(report: DoctorReport) -> str:
    counts = {s: sum(1 for c in report.checks if c.status == s) for s in ("ok", "warn", "fail")}
    warnings = "warning" if counts["warn"] == 1 else "warnings"
    return f"{counts['ok']} ok, {counts['warn']} {warnings}, {counts['fail']} failed"


@click.command()
@store_option
@click.option("--fix", "fix_", is_flag=True, help="Offer to repair what can be repaired safely (asks first).")
@click.option("--yes", "-y", is_flag=True, help="With --fix: answer yes to the confirmations.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def doctor(store_url: str | None, fix_: bool, yes: bool, fmt: str) -> None:
    """Check configuration, OAuth, credentials, auto-tagging, goals, UET tag, outbox store, clock and events."""
    from msclkid_middleware.config import Settings
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.errors import MsclkidError
    from msclkid_middleware.microsoft.campaign import CampaignManagementClient
    from msclkid_middleware.ops.doctor import fix, run_checks
    from msclkid_middleware.outbox import open_store

    environ = command_environ()
    config_error: str | None = None
    try:
        settings = Settings.from_env(environ)
        store_location: str | None = store_url or settings.effective_store_url
    except MsclkidError as exc:
        settings, config_error = Settings(), str(exc)
        # Never fall back to the default file in the working directory: that would create an empty outbox.
        store_location = store_url or (environ if environ is not None else os.environ).get("MSCLKID_STORE_URL")
    tracker: Any = None
    store: Any = None
    if config_error is None:
        try:
            tracker = ConversionTracker.from_env(environ, store_url=store_url, uet=False, settings=settings)
            store = tracker.store
        except MsclkidError as exc:
            config_error = str(exc)
    if store is None and store_location:
        try:
            store = open_store(store_location)
        except MsclkidError:
            store = None
    try:
        campaign = tracker.campaign if tracker is not None else None
        campaign = campaign if isinstance(campaign, CampaignManagementClient) else None
        registry = tracker.goal_registry if tracker is not None else None
        report = run_checks(
            settings=settings, store=store, campaign=campaign, registry=registry, config_error=config_error
        )
        checks = list(report.checks)
        if fmt == "text":
            click.echo(render_checks(checks))
        if fix_:
            for position, check in enumerate(checks):
                if check.fix is None or check.status == "ok":
                    continue
                question = _QUESTIONS[check.fix].format(account=settings.account_id)
                try:
                    agreed = yes or click.confirm(question, default=False)
                except click.Abort:
                    agreed = False
                if not agreed:
                    click.echo(f"  {check.name}: left unchanged")
                    continue
                checks[position] = fixed = fix(check.fix, campaign=campaign, store=store)
                if fmt == "text":
                    click.echo(f"fixed: {render_checks([fixed])}")
        elif fmt == "text" and any(c.fix is not None and c.status != "ok" for c in checks):
            click.echo("\n`msclkid doctor --fix` can repair the lines marked as fixable above (it asks first).")
        from msclkid_middleware.ops.doctor import DoctorReport

        final = DoctorReport(tuple(checks))
        if fmt == "json":
            click.echo(json.dumps(final.to_json(), indent=2, ensure_ascii=False))
        else:
            click.echo(f"\n{_summary(final)}")
    finally:
        if tracker is not None:
            tracker.close()
        elif store is not None:
            store.close()
    if final.failed:
        raise click.exceptions.Exit(1)
