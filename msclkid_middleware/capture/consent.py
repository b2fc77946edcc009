"""Consent decisions: may we store (and later send) this visitor's click ID?"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from msclkid_middleware.capture import tcf
from msclkid_middleware.capture.request import RequestFacts, parse_cookies
from msclkid_middleware.capture.tcf import MICROSOFT_VENDOR_ID
from msclkid_middleware.errors import ConfigError, TcfDecodeError

if TYPE_CHECKING:  # pragma: no cover
    from msclkid_middleware.config import Settings

__all__ = [
    "DEFAULT_DENIED_VALUES",
    "DEFAULT_GRANTED_VALUES",
    "DEFAULT_TCF_COOKIE",
    "Consent",
    "ConsentBasis",
    "ConsentDecider",
    "ConsentPolicy",
    "ConsentState",
    "Resolver",
]

ConsentState = Literal["granted", "denied"]
#: What decided: the app's resolver, the browser's Global Privacy Control header, the site's
#: consent cookie, a TCF v2.2 string, the snippet's report, or the configured default.
ConsentBasis = Literal["resolver", "gpc", "cookie", "tcf", "snippet", "default", "explicit"]


@dataclass(frozen=True, slots=True)
class Consent:
    """A consent decision and what it was based on; travels with the click into the outbox."""

    state: ConsentState
    basis: ConsentBasis = "explicit"
    #: ``state == "granted"``, worked out once: every request with a click reads it.
    granted: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "granted", self.state == "granted")

    @property
    def ad_storage(self) -> Literal["G", "D"]:
        """The UET ``adStorageConsent`` value for this decision."""
        return "G" if self.state == "granted" else "D"

    @classmethod
    def granted_by(cls, basis: ConsentBasis = "explicit") -> Consent:
        return cls("granted", basis)

    @classmethod
    def denied_by(cls, basis: ConsentBasis = "explicit") -> Consent:
        return cls("denied", basis)


Resolver = Callable[[Mapping[str, Any]], Consent | bool | str | None]
"""The app's own consent lookup: return a :class:`Consent`, ``True``/``False``, ``"granted"``/``"denied"``,
or ``None`` for "no opinion" (the next signal decides).  It gets the framework's view of the request: the WSGI
environ under :class:`~msclkid_middleware.middleware.MsclkidMiddleware`."""


class ConsentDecider(Protocol):
    """What capture needs from a consent policy (:class:`ConsentPolicy` is the one the package ships)."""

    def decide(
        self,
        request: RequestFacts,
        cookies: Mapping[str, str] | None = None,
        *,
        app_request: Mapping[str, Any] | None = None,
    ) -> Consent: ...

    def decide_reported(
        self,
        request: RequestFacts,
        cookies: Mapping[str, str] | None = None,
        *,
        state: str | None = None,
        tc_string: str | None = None,
        app_request: Mapping[str, Any] | None = None,
    ) -> Consent: ...


#: Consent cookie values read as granted / denied (compared case-insensitively).
DEFAULT_GRANTED_VALUES: tuple[str, ...] = ("granted", "true", "1", "yes", "allow", "accepted")
DEFAULT_DENIED_VALUES: tuple[str, ...] = ("denied", "false", "0", "no", "deny", "rejected")
DEFAULT_TCF_COOKIE = "euconsent-v2"

_log = logging.getLogger("msclkid_middleware.capture.consent")

# Decisions are immutable values; build each one once instead of on every request.
_GRANTED: Mapping[str, Consent] = {basis: Consent("granted", basis) for basis in get_args(ConsentBasis)}
_DENIED: Mapping[str, Consent] = {basis: Consent("denied", basis) for basis in get_args(ConsentBasis)}

_REPORTED_STATES = frozenset({"granted", "denied", "pending"})
_TCF_CACHE_SIZE = 256


def _value_set(values: Iterable[str] | str, setting: str) -> frozenset[str]:
    if isinstance(values, str):
        # A bare string is almost always "a,b" from configuration, not an iterable of characters.
        values = values.split(",")
    result: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise ConfigError(f"{setting}: every value must be a string", setting=setting)
        if value.strip():
            result.add(value.strip().lower())
    return frozenset(result)


class ConsentPolicy:
    """Decides, per request, whether this visitor's click ID may be stored (and later sent).

    Signals are asked in a fixed order; a refusal never loses to a signal further down:

    1. the app's ``resolver(environ)`` decides when it has an opinion (a raising resolver means denied:
       fail closed);
    2. ``Sec-GPC: 1`` means denied (when ``honor_gpc``, the default);
    3. the site's consent cookie ``cookie_name``, matched case-insensitively against ``granted_values``
       and ``denied_values`` (any other value is no opinion): denied is final;
    4. a TCF v2.2 string, from the ``tcf_cookie_name`` cookie and/or reported by the snippet: granted only
       when :func:`~msclkid_middleware.capture.tcf.microsoft_allowed` says so; a present string that is
       invalid, global-scope, dated in the future or does not allow Microsoft (vendor ``vendor_id``) is a
       final refusal;
    5. the state the page's snippet reported (:meth:`decide_reported` only): ``denied`` (or anything
       unknown) narrows to denied; ``granted`` stands when nothing above refused;
    6. the grants of 3 and 4 (no report, or ``pending``);
    7. ``default``: ``"granted"`` for opt-out regions, ``"denied"`` for opt-in ones (EEA/UK/CH).

    :meth:`decide` never raises.  Everything that can be worked out from the configuration is
    worked out here, so a decision costs a few dictionary lookups unless a TC string must be read.
    """

    __slots__ = (
        "_clock",
        "_cookie_name",
        "_cookie_needles",
        "_default",
        "_denied_values",
        "_fallback",
        "_granted_values",
        "_honor_gpc",
        "_resolver",
        "_tcf_cookie_name",
        "_tcf_decode",
        "_vendor_id",
    )

    def __init__(
        self,
        *,
        default: Literal["granted", "denied"] = "granted",
        resolver: Resolver | None = None,
        honor_gpc: bool = True,
        cookie_name: str | None = None,
        granted_values: Iterable[str] = DEFAULT_GRANTED_VALUES,
        denied_values: Iterable[str] = DEFAULT_DENIED_VALUES,
        tcf_cookie_name: str | None = DEFAULT_TCF_COOKIE,
        vendor_id: int = MICROSOFT_VENDOR_ID,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if default not in ("granted", "denied"):
            raise ConfigError(
                "ConsentPolicy(default=...) must be 'granted' (opt-out regions) or 'denied' (opt-in regions)",
                setting="MSCLKID_CONSENT_DEFAULT",
            )
        if resolver is not None and not callable(resolver):
            raise ConfigError("ConsentPolicy(resolver=...) must be a callable taking the WSGI environ")
        for setting, name in (("MSCLKID_CONSENT_COOKIE", cookie_name), ("MSCLKID_CONSENT_TCF_COOKIE", tcf_cookie_name)):
            if name is not None and (not isinstance(name, str) or not name.strip() or name != name.strip()):
                raise ConfigError(f"{setting}: a cookie name, or None to not read one", setting=setting)
        granted = _value_set(granted_values, "MSCLKID_CONSENT_GRANTED_VALUES")
        denied = _value_set(denied_values, "MSCLKID_CONSENT_DENIED_VALUES")
        if granted & denied:
            raise ConfigError(
                f"consent cookie values {sorted(granted & denied)} are listed as both granted and denied",
                setting="MSCLKID_CONSENT_GRANTED_VALUES",
            )
        if isinstance(vendor_id, bool) or not isinstance(vendor_id, int) or not 1 <= vendor_id <= 0xFFFF:
            raise ConfigError("ConsentPolicy(vendor_id=...) must be an IAB vendor ID between 1 and 65535")
        self._default: Literal["granted", "denied"] = default
        self._fallback = _GRANTED["default"] if default == "granted" else _DENIED["default"]
        self._resolver = resolver
        self._honor_gpc = bool(honor_gpc)
        self._cookie_name = cookie_name
        self._granted_values = granted
        self._denied_values = denied
        self._tcf_cookie_name = tcf_cookie_name
        self._vendor_id = vendor_id
        # A cookie whose name is not in the raw header is absent: skip parsing the header then.
        self._cookie_needles = tuple(n for n in (cookie_name, tcf_cookie_name) if n is not None)
        # A visitor sends the same TC string with every request; remember the last few decodings
        # (bounded: at most _TCF_CACHE_SIZE strings of at most 4 KiB each).  The verdict itself is not
        # cached: whether Created lies in the future depends on the time of the request.
        self._tcf_decode = functools.lru_cache(maxsize=_TCF_CACHE_SIZE)(_decoded)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, resolver: Resolver | None = None) -> ConsentPolicy:
        """The policy described by the ``MSCLKID_CONSENT_*`` settings (plus an optional resolver)."""
        return cls(
            default=settings.consent_default,
            resolver=resolver,
            honor_gpc=settings.consent_honor_gpc,
            cookie_name=settings.consent_cookie_name,
            granted_values=settings.consent_granted_values,
            denied_values=settings.consent_denied_values,
            tcf_cookie_name=settings.consent_tcf_cookie_name,
        )

    # -- read-only configuration --------------------------------------------------------------------
    @property
    def default(self) -> Literal["granted", "denied"]:
        return self._default

    @property
    def resolver(self) -> Resolver | None:
        return self._resolver

    @property
    def honor_gpc(self) -> bool:
        return self._honor_gpc

    @property
    def cookie_name(self) -> str | None:
        return self._cookie_name

    @property
    def granted_values(self) -> frozenset[str]:
        return self._granted_values

    @property
    def denied_values(self) -> frozenset[str]:
        return self._denied_values

    @property
    def tcf_cookie_name(self) -> str | None:
        return self._tcf_cookie_name

    @property
    def vendor_id(self) -> int:
        return self._vendor_id

    def __repr__(self) -> str:
        return (
            f"ConsentPolicy(default={self._default!r}, resolver={self._resolver!r}, honor_gpc={self._honor_gpc!r},"
            f" cookie_name={self._cookie_name!r}, tcf_cookie_name={self._tcf_cookie_name!r},"
            f" vendor_id={self._vendor_id!r})"
        )

    # -- decisions ----------------------------------------------------------------------------------
    def decide(
        self,
        request: RequestFacts | Mapping[str, Any],
        cookies: Mapping[str, str] | None = None,
        *,
        app_request: Mapping[str, Any] | None = None,
    ) -> Consent:
        """The decision for a request, from server-side signals only.  Never raises.

        ``request`` is the request's :class:`~msclkid_middleware.capture.request.RequestFacts`, or a
        CGI-style environ (WSGI, Django's ``request.META``) read into them.  ``app_request`` is what the
        resolver gets (the environ itself when one was given; ``{}`` otherwise).  ``cookies`` are the
        request's parsed cookies when the caller has them already; otherwise the ``Cookie`` header is
        parsed here (for a repeated name the first value wins).
        """
        if request.__class__ is RequestFacts:  # what every adapter passes: one call less on every request
            # No resolver, no Sec-GPC, a readable Cookie header holding none of the consent cookies we read: the
            # configured default, as _decide would answer, without its call (most requests, every landing).
            if self._resolver is None and cookies is None and request[2] is None and not request[3]:
                header = request[1]
                for needle in self._cookie_needles:
                    if needle in header:
                        break
                else:
                    return self._fallback
            try:
                return self._decide(request, cookies, None, None, app_request)
            except Exception:
                _log.error("consent decision failed; treating the request as denied", exc_info=True)
                return _DENIED["default"]
        return self._safely(request, cookies, None, None, app_request)

    def decide_reported(
        self,
        request: RequestFacts | Mapping[str, Any],
        cookies: Mapping[str, str] | None = None,
        *,
        state: str | None = None,
        tc_string: str | None = None,
        app_request: Mapping[str, Any] | None = None,
    ) -> Consent:
        """The decision for a capture request from the page's snippet.  Never raises.

        ``state`` is what the page reported (``"granted"``, ``"denied"``, or ``"pending"`` /
        ``None`` for no opinion; anything else counts as denied) and ``tc_string`` the CMP's TC
        string, checked as well as the TCF cookie.  The report narrows, never widens: the resolver,
        GPC, a denying consent cookie and a refusing TC string all come first.
        """
        return self._safely(request, cookies, state, tc_string, app_request)

    def _safely(
        self,
        request: RequestFacts | Mapping[str, Any],
        cookies: Mapping[str, str] | None,
        state: str | None,
        tc_string: str | None,
        app_request: Mapping[str, Any] | None,
    ) -> Consent:
        try:
            if not isinstance(request, RequestFacts):
                if app_request is None:
                    app_request = request
                request = RequestFacts.from_environ(request)
            return self._decide(request, cookies, state, tc_string, app_request)
        except Exception:  # the request path must never see an exception from here; deny instead
            _log.error("consent decision failed; treating the request as denied", exc_info=True)
            return _DENIED["default"]

    def _decide(
        self,
        request: RequestFacts,
        cookies: Mapping[str, str] | None,
        state: str | None,
        tc_string: str | None,
        app_request: Mapping[str, Any] | None,
    ) -> Consent:
        # 1. The app knows best (a logged-in user's stored choice, a geo lookup, ...).
        if self._resolver is not None:
            decision = _ask_resolver(self._resolver, app_request if app_request is not None else {})
            if decision is not None:
                return decision
        # 2. Global Privacy Control: an opt-out the page's JavaScript cannot forge.
        gpc = request.sec_gpc
        if self._honor_gpc and gpc is not None and gpc.strip() == "1":
            return _DENIED["gpc"]
        # 3. and 4. need cookies; parse them at most once, and only when a wanted name is there.
        jar: Mapping[str, str] | None = cookies
        if jar is None and self._cookie_needles:
            if request.cookie_unreadable:
                _log.debug("the Cookie header is not a string; treating the request as denied")
                return _DENIED["cookie"]
            jar = self._cookies_from(request.cookie_header)
        if not jar and state is None and not tc_string:
            return self._fallback  # no cookie of a consent tool, nothing reported: the configured default
        try:
            from_cookie = self._from_cookie(jar, self._cookie_name) if self._cookie_name is not None and jar else None
            tcf_cookie = _get(jar, self._tcf_cookie_name) if self._tcf_cookie_name is not None and jar else None
        except Exception:  # a caller's odd cookie mapping; fail closed rather than guess
            _log.debug("cookies could not be read; treating the request as denied", exc_info=True)
            return _DENIED["cookie"]
        # 3. The site's consent cookie: a refusal is final; a grant waits for the snippet's report below.
        if from_cookie is not None and not from_cookie.granted:
            return from_cookie
        # 4. TCF v2.2 strings (the CMP's cookie and the one the snippet reported): any refusal is final.
        from_tcf: Consent | None = None
        for candidate in (tcf_cookie, tc_string):
            if candidate:
                from_tcf = self._from_tc_string(candidate)
                if not from_tcf.granted:
                    return from_tcf
        # 5. What the page's snippet reported: it may narrow what the server saw, never widen a refusal above.
        if state is not None:
            reported = state.strip().lower() if isinstance(state, str) else ""
            if reported == "granted":
                return from_cookie or from_tcf or _GRANTED["snippet"]
            if reported not in _REPORTED_STATES:
                _log.debug("capture request reported an unknown consent state; treating it as denied")
                return _DENIED["snippet"]
            if reported == "denied":
                return _DENIED["snippet"]
        # The server-side grants (no snippet report, or "pending").
        if from_cookie is not None:
            return from_cookie
        if from_tcf is not None:
            return from_tcf
        # 6. Nothing had an opinion.
        return self._fallback

    def _cookies_from(self, header: str) -> Mapping[str, str]:
        """The request's cookies; ``{}`` when none we read is present (the header is not even parsed then)."""
        if header:
            for needle in self._cookie_needles:
                if needle in header:
                    return parse_cookies(header)[0]
        return {}

    def _from_cookie(self, jar: Mapping[str, str], name: str) -> Consent | None:
        value = _get(jar, name)
        if not value:
            return None
        lowered = value.strip().lower()
        if lowered in self._granted_values:
            return _GRANTED["cookie"]
        if lowered in self._denied_values:
            return _DENIED["cookie"]
        return None  # a value we do not know is no opinion: a resolver can read richer cookies

    def _from_tc_string(self, tc_string: str) -> Consent:
        tc = self._tcf_decode(tc_string) if isinstance(tc_string, str) else None
        now = datetime.fromtimestamp(self._clock(), UTC)
        allowed = tc is not None and tc.vendor_allowed(self._vendor_id, now=now)
        return _GRANTED["tcf"] if allowed else _DENIED["tcf"]


def _ask_resolver(resolver: Resolver, environ: Mapping[str, Any]) -> Consent | None:
    try:
        answer = resolver(environ)
    except Exception:
        _log.error("consent resolver %r raised; treating the request as denied", resolver, exc_info=True)
        return _DENIED["resolver"]
    if answer is None:
        return None
    if isinstance(answer, Consent):
        # The app may name its own basis ("explicit" for a stored account setting, ...).
        return answer
    if isinstance(answer, bool):
        return _GRANTED["resolver"] if answer else _DENIED["resolver"]
    if isinstance(answer, str):
        lowered = answer.strip().lower()
        if lowered == "granted":
            return _GRANTED["resolver"]
        if lowered == "denied":
            return _DENIED["resolver"]
    _log.error(
        "consent resolver %r returned %s, not a Consent, bool, 'granted', 'denied' or None;"
        " treating the request as denied",
        resolver,
        type(answer).__name__,
    )
    return _DENIED["resolver"]


def _decoded(tc_string: str) -> tcf.TCString | None:
    """The decoded string, or ``None`` when it does not decode (cached per policy: decoding is the cost)."""
    try:
        return tcf.decode(tc_string)
    except TcfDecodeError as exc:
        # The string itself may be attacker-made: log why, never the value.
        _log.debug("TC string rejected (%s); treating the request as denied", exc)
        return None


def _get(jar: Mapping[str, str], name: str) -> str | None:
    value = jar.get(name)
    return value if isinstance(value, str) else None
