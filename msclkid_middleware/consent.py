"""Consent decisions: may we store (and later send) this visitor's click ID?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Consent", "ConsentBasis", "ConsentState"]

ConsentState = Literal["granted", "denied"]
#: What decided: the app's resolver, the browser's Global Privacy Control header, the site's
#: consent cookie, a TCF v2.2 string, the snippet's report, or the configured default.
ConsentBasis = Literal["resolver", "gpc", "cookie", "tcf", "snippet", "default", "explicit"]


@dataclass(frozen=True, slots=True)
class Consent:
    """A consent decision and what it was based on; travels with the click into the outbox."""

    state: ConsentState
    basis: ConsentBasis = "explicit"

    @property
    def granted(self) -> bool:
        return self.state == "granted"

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
