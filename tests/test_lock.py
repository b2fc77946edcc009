"""S9: ``requirements.lock`` pins every runtime dependency (and the postgres/phone/django extras) with a hash."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
ENTRY = re.compile(r"^([a-z0-9][a-z0-9._-]*)==([^\s\\]+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.M)


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    entries = ENTRY.findall(text)
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(body) == 2 * len(entries), "every lock entry is `name==version \\` + one sha256 hash line"
    return {canonicalize_name(name): version for name, version, _ in entries}


def test_every_runtime_dependency_is_pinned_with_a_hash_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    wanted += project["optional-dependencies"]["phone"] + project["optional-dependencies"]["django"]
    pins = locked()
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pins, f"{spec.name} is not in requirements.lock (run `make lock`)"
        assert spec.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {spec}"
    # Flask's and requests' own dependencies are locked too (the lock is the whole closure).
    assert {"jinja2", "markupsafe", "click", "blinker", "urllib3", "idna", "certifi"} <= set(pins)
