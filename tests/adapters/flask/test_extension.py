"""The Flask extension with the Flask test client: config defaults, secret reuse, app factory, two apps, views."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask, g, render_template_string
from flask_helpers import CLICK, AppFactory
from itsdangerous import BadSignature

from msclkid_middleware.capture.cookie import ClickCookie
from msclkid_middleware.config import Settings
from msclkid_middleware.errors import ConfigError
from msclkid_middleware.flask import CONFIG_DEFAULTS, EXTENSION_KEY, Msclkid, current_click, current_consent
from msclkid_middleware.middleware import MsclkidMiddleware
from msclkid_middleware.testing import EmulatorHandle

ROOT = Path(__file__).resolve().parents[3]


def add_views(app: Flask) -> None:
    @app.route("/whoami")
    def whoami() -> dict[str, str | None]:
        click, consent = current_click(), current_consent()
        return {
            "msclkid": click.msclkid if click else None,
            "source": click.source if click else None,
            "consent": consent.state if consent else None,
        }

    @app.route("/landing")
    def landing() -> tuple[str, int, dict[str, str]]:
        return "", 302, {"Location": "/whoami"}


def test_every_setting_gets_a_config_default_and_existing_values_are_kept(make_app: AppFactory) -> None:
    # One default per documented setting name, nothing else.
    assert set(CONFIG_DEFAULTS) == set(Settings.setting_names().values())
    assert CONFIG_DEFAULTS["MSCLKID_UET_PAGE_LOADS"] == "off"
    assert CONFIG_DEFAULTS["MSCLKID_WORKER"] == "off"
    app = make_app({"MSCLKID_CONSENT_DEFAULT": "denied", "MSADS_ENVIRONMENT": "sandbox"})
    for key, value in CONFIG_DEFAULTS.items():
        assert key in app.config
        if key not in ("MSCLKID_CONSENT_DEFAULT", "MSADS_ENVIRONMENT"):
            assert app.config[key] == value, key
    assert app.config["MSCLKID_CONSENT_DEFAULT"] == "denied"
    state = Msclkid.state(app)
    assert state.settings.consent_default == "denied"
    assert state.settings.environment == "sandbox"
    # The Settings defaults and the Flask defaults agree where Flask does not derive its own.
    settings = Settings()
    names = Settings.setting_names()
    for f in dataclasses.fields(Settings):
        if f.name in names and f.name not in ("secret_keys", "store_url", "cookie_name"):
            assert CONFIG_DEFAULTS[names[f.name]] == getattr(settings, f.name), f.name


def test_every_config_key_is_documented_once_in_configuration_md() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text[text.index("## Flask") :]
    for key in CONFIG_DEFAULTS:
        rows = [line for line in section.splitlines() if line.startswith(f"| `{key}`")]
        assert len(rows) == 1, key


def test_registers_state_wraps_wsgi_app_and_refuses_double_init(make_app: AppFactory) -> None:
    app = make_app()
    state = app.extensions[EXTENSION_KEY]
    assert state is Msclkid.state(app)
    assert isinstance(app.wsgi_app, MsclkidMiddleware)
    assert app.wsgi_app is state.middleware
    with pytest.raises(ConfigError, match="already"):
        state.extension.init_app(app)


def test_secret_key_is_reused_with_the_cookies_own_salt(make_app: AppFactory) -> None:
    app = make_app({"MSCLKID_COOKIE_SECURE": False})
    add_views(app)
    client = app.test_client()
    landing = client.get(f"/landing?msclkid={CLICK}")
    assert landing.status_code == 302
    token = client.get_cookie("msclkid")
    assert token is not None
    # Verifies with the app's SECRET_KEY ...
    assert ClickCookie(["flask-secret"], name="msclkid", secure=False).decode(token.value) is not None
    assert ClickCookie(["another-key"], name="msclkid", secure=False).decode(token.value) is None
    # ... but is no Flask session token: Flask's signer (its own salt) rejects it.
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    with pytest.raises(BadSignature):
        serializer.loads(token.value, max_age=60)


def test_msclkid_secret_keys_win_and_fallbacks_rotate(make_app: AppFactory) -> None:
    old = ClickCookie(["old-key"], name="msclkid", secure=False).set_cookie(CLICK, datetime.now(UTC).timestamp())
    assert old is not None
    old_value = old.split(";", 1)[0].split("=", 1)[1]
    # SECRET_KEY_FALLBACKS verify (oldest first), SECRET_KEY signs, and an old cookie is re-issued.
    app = make_app({"MSCLKID_COOKIE_SECURE": False, "SECRET_KEY_FALLBACKS": ["old-key"], "SECRET_KEY": "new-key"})
    add_views(app)
    client = app.test_client()
    client.set_cookie("msclkid", old_value)
    response = client.get("/whoami")
    assert response.json == {"msclkid": CLICK, "source": "cookie", "consent": "granted"}
    reissued = client.get_cookie("msclkid")
    assert reissued is not None
    assert reissued.value != old_value
    assert ClickCookie(["new-key"], name="msclkid", secure=False).decode(reissued.value) is not None
    # MSCLKID_SECRET_KEYS (a comma-separated string, as from the environment) wins over SECRET_KEY.
    own = make_app({"MSCLKID_COOKIE_SECURE": False, "MSCLKID_SECRET_KEYS": "a-key, b-key"})
    add_views(own)
    client = own.test_client()
    client.get(f"/landing?msclkid={CLICK}")
    token = client.get_cookie("msclkid")
    assert token is not None
    assert ClickCookie(["b-key"], name="msclkid", secure=False).decode(token.value) is not None
    assert ClickCookie(["flask-secret"], name="msclkid", secure=False).decode(token.value) is None


def test_no_secret_at_all_is_a_config_error(tmp_path: Path) -> None:
    app = Flask("nokey", instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="SECRET_KEY") as info:
        Msclkid(app)
    assert info.value.setting == "MSCLKID_SECRET_KEYS"
    assert EXTENSION_KEY not in app.extensions


def test_bad_config_fails_at_init_app_with_the_setting_named(tmp_path: Path) -> None:
    app = Flask("bad", instance_path=str(tmp_path))
    app.config.update(SECRET_KEY="k", MSCLKID_WORKER="process")
    with pytest.raises(ConfigError) as info:
        Msclkid().init_app(app)
    assert info.value.setting == "MSCLKID_WORKER"
    secure = Flask("insecure", instance_path=str(tmp_path))
    secure.config.update(SECRET_KEY="k", MSCLKID_COOKIE_SECURE=False)
    # Plain-http cookies need the explicit keyword, never configuration alone.
    with pytest.raises(ConfigError, match="allow_insecure_cookie"):
        Msclkid(secure)


def test_app_factory_one_extension_two_apps_with_their_own_config_and_store(
    make_app: AppFactory, ms: EmulatorHandle
) -> None:
    ext = Msclkid(allow_insecure_cookie=True)
    eu = make_app({"MSCLKID_COOKIE_SECURE": False, "MSCLKID_CONSENT_DEFAULT": "denied"}, ext=ext)
    us = make_app({"MSCLKID_COOKIE_SECURE": False, "SECRET_KEY": "us-secret", **ms.env}, ext=ext)
    add_views(eu)
    add_views(us)
    assert not hasattr(ext, "app")
    eu_client, us_client = eu.test_client(), us.test_client()
    eu_client.get(f"/landing?msclkid={CLICK}")
    us_client.get(f"/landing?msclkid={CLICK}")
    assert eu_client.get_cookie("msclkid") is None  # opt-in app: nothing stored without consent
    assert us_client.get("/whoami").json == {"msclkid": CLICK, "source": "cookie", "consent": "granted"}
    # The tracker follows the current app: each app has its own outbox in its own instance folder.
    with eu.app_context():
        eu_tracker = ext.tracker
    with us.app_context():
        us_tracker = ext.tracker
    assert eu_tracker is not us_tracker
    assert eu_tracker.store.url.endswith(str(Path(eu.instance_path) / "msclkid-outbox.sqlite3"))
    assert us_tracker.store.url.endswith(str(Path(us.instance_path) / "msclkid-outbox.sqlite3"))
    assert eu_tracker.campaign is None  # no MSADS_* in that app's config
    assert us_tracker.campaign is not None
    us_tracker.record_offline("ord_1", "Purchase", datetime.now(UTC), 10.0, "USD", click=CLICK)
    assert us_tracker.flush().delivered == 1
    assert [i.payload["MicrosoftClickId"] for i in ms.received("offline")] == [CLICK]
    assert eu_tracker.store.open_count() == 0


def test_tracker_is_built_lazily(make_app: AppFactory) -> None:
    app = make_app()
    state = Msclkid.state(app)
    assert not (Path(app.instance_path) / "msclkid-outbox.sqlite3").exists()
    assert state.tracker is state.tracker
    assert (Path(app.instance_path) / "msclkid-outbox.sqlite3").exists()


def test_store_url_from_config(make_app: AppFactory, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"
    app = make_app({"MSCLKID_STORE_URL": url})
    assert Msclkid.state(app).tracker.store.url == url


def test_current_click_and_consent_in_views_and_templates(make_app: AppFactory) -> None:
    app = make_app({"MSCLKID_COOKIE_SECURE": False, "MSCLKID_CONSENT_COOKIE": "site_consent"})
    add_views(app)

    @app.route("/tpl")
    def tpl() -> str:
        return render_template_string(
            "{% set c = current_click() %}{{ c.msclkid if c else 'none' }}/{{ current_consent().state }}"
        )

    client = app.test_client()
    assert client.get("/whoami").json == {"msclkid": None, "source": None, "consent": "granted"}
    assert client.get(f"/whoami?msclkid={CLICK}").json == {"msclkid": CLICK, "source": "url", "consent": "granted"}
    assert client.get("/tpl").get_data(as_text=True) == f"{CLICK}/granted"
    client.set_cookie("site_consent", "denied")
    assert client.get("/whoami").json == {"msclkid": None, "source": None, "consent": "denied"}
    # Outside a request there is no click and no consent (and no exception).
    with app.app_context():
        assert current_click() is None
        assert current_consent() is None


def test_snippet_global_renders_the_include_with_the_csp_nonce(make_app: AppFactory) -> None:
    app = make_app()

    @app.route("/page")
    def page() -> str:
        g.csp_nonce = "n0nce-123"
        return render_template_string("{{ msclkid_snippet('pending') }}")

    @app.route("/plain")
    def plain() -> str:
        return render_template_string("{{ msclkid_snippet() }}@@{{ msclkid_snippet(queue=True, nonce='x\"y') }}")

    client = app.test_client()
    assert client.get("/page").get_data(as_text=True) == (
        '<script src="/_msclkid.js" data-consent="pending" async nonce="n0nce-123"></script>'
    )
    first, second = client.get("/plain").get_data(as_text=True).split("@@")
    assert first == '<script src="/_msclkid.js" async></script>'
    assert second.startswith('<script nonce="x&#34;y">window.msclkid=window.msclkid||')
    assert second.endswith('<script src="/_msclkid.js" async nonce="x&#34;y"></script>')
    # The snippet the tag points at is served by the wrapped app.
    served = client.get("/_msclkid.js")
    assert served.status_code == 200
    assert served.mimetype == "text/javascript"


def test_snippet_global_follows_custom_paths_and_the_script_root(make_app: AppFactory) -> None:
    app = make_app({"MSCLKID_SNIPPET_PATH": "/t/s.js", "MSCLKID_CAPTURE_PATH": "/t/c"})

    @app.route("/page")
    def page() -> str:
        return render_template_string("{{ msclkid_snippet() }}")

    body = app.test_client().get("/page", base_url="http://localhost/shop/").get_data(as_text=True)
    assert body == '<script src="/shop/t/s.js" data-endpoint="/shop/t/c" async></script>'
    with app.test_request_context("/"), pytest.raises(ConfigError):
        render_template_string("{{ msclkid_snippet('maybe') }}")
    off = make_app(snippet_path=None)

    @off.route("/page")
    def off_page() -> str:
        return render_template_string("[{{ msclkid_snippet() }}]")

    assert off.test_client().get("/page").get_data(as_text=True) == "[]"


def test_state_of_an_app_without_the_extension_is_a_clear_error(tmp_path: Path) -> None:
    app = Flask("bare", instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="not initialised"):
        Msclkid.state(app)
    with app.app_context(), pytest.raises(ConfigError):
        _ = Msclkid().tracker


def test_only_the_flask_module_imports_flask() -> None:
    hits = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "msclkid_middleware").rglob("*.py")
        if re.search(r"^\s*(from flask\b|import flask\b)", p.read_text(), re.M)
    ]
    assert hits == ["msclkid_middleware/flask.py"]
