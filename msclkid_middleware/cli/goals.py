"""``msclkid goals [list | check | create | update]``: the account's offline conversion goals, checked against the
configured names, created and changed."""

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

#: Every ``ConversionGoalType`` flag: ``goals update`` finds a goal of any type by its name.
_ALL_TYPES = "Url,Duration,PagesViewedPerVisit,Event,AppInstall,OfflineConversion,InStoreTransaction"
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
            f"{'id':>10} {'name':<28} {'status':<8} {'scope':<8} {'revenue':<22} {'window':>7} {'count':<6}"
            f" {'enhanced':<8} {'bidding':<8} {'attribution':<11} {'view-thru':<9} {'auto':<5} {'tag':<10} age"
        )
        for g in found:
            # AttributionModelType, the view-through window and TagId are "not applicable for offline conversion
            # goals" (Microsoft): shown as Microsoft returns them, "n/a" when it returns none.
            view = (
                "n/a"
                if g.view_through_window_minutes is None
                else _age(timedelta(minutes=g.view_through_window_minutes))
            )
            click.echo(
                f"{g.id or '-':>10} {g.name[:28]:<28} {g.status:<8} {g.scope:<8} {_revenue(g)[:22]:<22}"
                f" {_age(timedelta(minutes=g.conversion_window_minutes)):>7} {g.count_type:<6}"
                f" {_flag(g.enhanced):<8} {_bidding(g.exclude_from_bidding):<8} {g.attribution_model or 'n/a':<11}"
                f" {view:<9} {_flag(g.is_auto_goal):<5} {g.tag_id or 'n/a':<10} {_goal_age(tracker, g.name, now)}"
            )
        if not found:
            click.echo("no offline conversion goals: create one with `msclkid goals create NAME`")


def _revenue(goal: ConversionGoal) -> str:
    if goal.revenue_type == "NoValue":
        return "no value"
    value = "" if goal.revenue_value is None else f" {goal.revenue_value:g}"
    kind = "fixed" if goal.revenue_type == "FixedValue" else "variable"
    return f"{kind}{value} {goal.currency or ''}".strip()


def _refuse_formula(name: str, hint: str) -> None:
    """Refuse a goal name a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` ...).

    Microsoft matches names exactly, so the UI import files carry them verbatim (no ``'`` guard): such a name
    would be a formula-injection hazard in every exported file, and guarding it would make uploads miss the goal.
    """
    from msclkid_middleware.ops.csv_format import FORMULA_START

    if name.startswith(FORMULA_START):
        raise click.BadParameter(
            f"{name!r}: a goal name must not start with {' '.join(repr(c) for c in FORMULA_START[:4])}"
            " (spreadsheets run it as a formula; exported files carry names verbatim)",
            param_hint=hint,
        )


def _bidding(excluded: bool | None) -> str:
    """``ExcludeFromBidding``: whether automated bidding (and the Conversions columns) use the goal."""
    return "unknown" if excluded is None else ("excluded" if excluded else "included")


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

    _refuse_formula(name, "NAME")
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


@goals.command("update")
@store_option
@click.argument("name")
@click.option("--rename", default=None, help="A new name (unique per customer).")
@click.option("--status", type=click.Choice(["active", "paused"]), default=None)
@click.option("--count", type=click.Choice(["all", "unique"]), default=None, help="CountType.")
@click.option("--window", default=None, help="Conversion window: 30d, 12h, minutes (max 90d).")
@click.option("--revenue", type=click.Choice(["fixed", "variable", "none"]), default=None, help="Revenue type.")
@click.option("--value", type=click.FloatRange(min=0), default=None, help="Fixed value, or the variable default.")
@click.option("--currency", default=None, help="ISO code of the revenue value.")
@click.option("--exclude-from-bidding/--include-in-bidding", "exclude", default=None, help="ExcludeFromBidding.")
@click.option(
    "--attribution-model",
    type=click.Choice(["LastClick", "LastTouch", "DataDriven"]),
    default=None,
    help="AttributionModelType (Microsoft: not applicable for offline goals).",
)
@click.pass_context
def update_goal(
    ctx: click.Context,
    store_url: str | None,
    name: str,
    rename: str | None,
    status: str | None,
    count: str | None,
    window: str | None,
    revenue: str | None,
    value: float | None,
    currency: str | None,
    exclude: bool | None,
    attribution_model: str | None,
) -> None:
    """Change a goal through UpdateConversionGoals; options left out keep their value at Microsoft."""
    from msclkid_middleware.microsoft.goals import GoalUpdate

    if rename is not None:
        _refuse_formula(rename, "--rename")
    with open_tracker(_store_of(ctx, store_url), uet=False) as tracker:
        client = goals_client(tracker)
        try:
            matches = [g for g in client.query_goals((), types=_ALL_TYPES) if g.name == name]
        except MsclkidError as exc:
            raise fail(exc) from None
        if not matches or matches[0].id is None:
            raise click.ClickException(f"no goal named exactly {name!r} in account {tracker.account}")
        goal = matches[0]
        goal_id = str(goal.id)
        try:
            update = GoalUpdate(
                goal_id,
                type=goal.type,
                name=rename,
                status="Active" if status == "active" else "Paused" if status == "paused" else None,
                count_type={"all": "All", "unique": "Unique", None: None}[count],
                conversion_window_minutes=parse_minutes(window) if window else None,
                revenue_type={"fixed": "FixedValue", "variable": "VariableValue", "none": "NoValue", None: None}[
                    revenue
                ],
                revenue_value=value,
                currency=currency,
                exclude_from_bidding=exclude,
                attribution_model=attribution_model,
            )
            [error] = client.update_goals([update])
        except MsclkidError as exc:
            raise fail(exc) from None
        if error is not None:
            raise click.ClickException(f"Microsoft did not update goal {name!r}: {error}")
        if rename:
            record = tracker.goal_registry.get(tracker.account, name)
            if record is not None:
                tracker.goal_registry.record(tracker.account, rename, record.created_at, goal_id)
    changed = ", ".join(f"{k}={v}" for k, v in update.changes().items())
    click.echo(f"updated goal {name!r} (id {goal.id}): {changed}")
