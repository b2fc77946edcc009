"""Helpers shared by the Flask extension tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

CLICK = "f894f652ea334e739002f7167ab8f8e3"

AppFactory = Callable[..., Flask]
