"""``msclkid goals [list | check | create]``: the account's offline conversion goals against the configured names."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from msclkid_middleware.cli.common import fail, goals_client, open_tracker, parse_minutes, store_option
from msclkid_middleware.errors import MsclkidError, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.dispatch.tracker import ConversionTracker
    from msclkid_middleware.microsoft.goals import ConversionGoal

__all__ = ["goals"]

_CATEGORIES = (
    "Purchase", "AddToCart", "BeginCheckout", "Subscribe", "SubmitLeadForm", "BookAppointment", "Signup",
    "RequestQuote", "GetDirections", "OutboundClick", "Contact", "PageView", "Download", "Other",
)  # fmt: skip


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} d"


@click.group(invoke_without_command=True)
@store_option
@click.pass_context
def goals(ctx: click.Context, store_url: str | None) -> None:
    """List the account's offline conversion goals and check the configured names against them."""
    ctx.obj = store_url
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_goals, store_url=store_url)
        ctx.invoke(check_goals, store_url=store_url)


def _store_of(ctx: click.Context, store_url: str | None) -> str | None:
    return store_url or (ctx.obj if isinstance(ctx.obj, str) else None)


def _account_goals(tracker: ConversionTracker) -> list[ConversionGoal]:
    try:
        return goals_client(tracker).list_goals()
    except MsclkidError as exc:
        raise fail(exc) from None


@goals.command("list")
@store_option
@click.pass_context
def list_goals(ctx: click.Context, store_url: str | None) -> None:
    """The account's offline conversion goals."""
    with open_tracker(_store_of(ctx, store_url), uet=False) as tracker:
        found = _account_goals(tracker)
        now = tracker.clock()
        click.echo(
            f"{'id':>10} {'name':<28} {'status':<8} {'revenue':<22} {'window':>7} {'count':<6} {'enhanced':<8} age"
        )
        for g in found:
            click.echo(
                f"{g.id or '-':>10} {g.name[:28]:<28} {g.status:<8} {_revenue(g)[:22]:<22}"
                f" {_age(timedelta(minutes=g.conversion_window_minutes)):>7} {g.count_type:<6}"
                f" {_flag(g.enhanced):<8} {_goal_age(tracker, g.name, now)}"
            )
        if not found:
            click.echo("no offline conversion goals: create one with `msclkid goals create NAME`")


def _revenue(goal: ConversionGoal) -> str:
    if goal.revenue_type == "NoValue":
        return "no value"
    value = "" if goal.revenue_value is None else f" {goal.revenue_value:g}"
    kind = "fixed" if goal.revenue_type == "FixedValue" else "variable"
    return f"{kind}{value} {goal.currency or ''}".strip()


def _flag(value: bool | None) -> str:
    return "unknown" if value is None else ("on" if value else "off")


def _goal_age(tracker: ConversionTracker, name: str, now: datetime) -> str:
    record = tracker.goal_registry.get(tracker.account, name)
    if record is None:
        return "unknown (not created by msclkid)"
    age = record.age(now)
    return _age(age) + ("" if record.ready_at <= now else f" (too young until {record.ready_at:%H:%M} UTC)")


@goals.command("check")
@store_option
@click.pass_context
def check_goals(ctx: click.Context, store_url: str | None) -> None:
    """Check MSADS_CONVERSION_GOALS (else the names in the outbox) against the account: exact, active, age."""
    with open_tracker(_store_of(ctx, store_url), uet=False) as tracker:
        found = {g.name: g for g in _account_goals(tracker)}
        names = list(tracker.goals) or sorted({c.conversion_name for c in tracker.store.counts() if c.conversion_name})
        if not names:
            click.echo("no goal names configured (MSADS_CONVERSION_GOALS) or recorded yet: nothing to check")
            return
        now = tracker.clock()
        problems = 0
        for name in names:
            goal = found.get(name)
            if goal is None:
                problems += 1
                near = [n for n in found if n.strip().casefold() == name.strip().casefold()]
                hint = f"; did you mean {near[0]!r}? (names must match exactly)" if near else ""
                click.echo(f"FAIL {name!r}: no offline goal with exactly this name{hint}")
                continue
            issues = []
            if not goal.active:
                issues.append(f"status {goal.status}: conversions will not count")
            record = tracker.goal_registry.get(tracker.account, name)
            if record is not None and record.ready_at > now:
                issues.append(f"younger than 2 hours: uploads are held until {record.ready_at:%H:%M} UTC")
            details = (
                f"id {goal.id}, window {_age(timedelta(minutes=goal.conversion_window_minutes))},"
                f" {_revenue(goal)}, count {goal.count_type}, enhanced conversions {_flag(goal.enhanced)},"
                f" age {_goal_age(tracker, name, now)}"
            )
            if issues:
                problems += 1
                click.echo(f"FAIL {name!r}: {'; '.join(issues)} ({details})")
            else:
                click.echo(f"ok   {name!r}: {details}")
    if problems:
        raise click.exceptions.Exit(1)


@goals.command("create")
@store_option
@click.argument("name")
@click.option("--type", "goal_type", type=click.Choice(["offline"]), default="offline", show_default=True)
@click.option("--revenue", type=click.Choice(["fixed", "variable", "none"]), default="variable", show_default=True)
@click.option("--value", type=click.FloatRange(min=0), default=None, help="Fixed value, or the variable default.")
@click.option("--currency", default=None, help="ISO code, for fixed/variable revenue.")
@click.option("--count", type=click.Choice(["all", "unique"]), default="all", show_default=True)
@click.option("--window", default="30d", show_default=True, help="Conversion window: 30d, 12h, minutes (max 90d).")
@click.option("--category", default="purchase", show_default=True, help="GoalCategory: " + ", ".join(_CATEGORIES))
@click.option("--enhanced/--no-enhanced", default=None, help="IsEnhancedConversionsEnabled.")
@click.pass_context
def create_goal(
    ctx: click.Context,
    store_url: str | None,
    name: str,
    goal_type: str,
    revenue: str,
    value: float | None,
    currency: str | None,
    count: str,
    window: str,
    category: str,
    enhanced: bool | None,
) -> None:
    """Create an offline conversion goal (step 1 of the setup) and remember when, for the 2-hour wait."""
    from msclkid_middleware.microsoft.goals import ConversionGoal

    matches = [c for c in _CATEGORIES if c.casefold() == category.replace("-", "").replace("_", "").casefold()]
    if not matches:
        raise click.BadParameter(f"{category!r}: one of {', '.join(_CATEGORIES)}", param_hint="--category")
    if revenue != "none" and not currency:
        raise click.BadParameter("give --currency for fixed or variable revenue", param_hint="--currency")
    if revenue == "fixed" and value is None:
        raise click.BadParameter("fixed revenue needs --value", param_hint="--value")
    del goal_type  # offline is the only type this toolkit uploads to
    try:
        spec = ConversionGoal(
            name,
            revenue_type={"fixed": "FixedValue", "variable": "VariableValue", "none": "NoValue"}[revenue],  # type: ignore[arg-type]
            revenue_value=value,
            currency=currency.upper() if currency else None,
            count_type="All" if count == "all" else "Unique",
            conversion_window_minutes=parse_minutes(window),
            category=matches[0],
            enhanced=enhanced,
        )
    except ValidationError as exc:
        raise fail(exc) from None
    with open_tracker(_store_of(ctx, store_url), uet=False) as tracker:
        client = goals_client(tracker)
        try:
            goal_id = client.add_goal(spec)
        except MsclkidError as exc:
            raise fail(exc) from None
        record = tracker.goal_registry.record(tracker.account, name, tracker.clock(), goal_id)
    click.echo(f"created offline goal {name!r} (id {goal_id}) in account {tracker.account}")
    click.echo(
        f"Wait 2 hours before uploading: conversions for it are held until {record.ready_at:%Y-%m-%d %H:%M} UTC."
        " Add the exact name to MSADS_CONVERSION_GOALS."
    )
