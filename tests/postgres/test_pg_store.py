"""What only the PostgreSQL store has: URLs and schemas, migrations, the application's own
transaction, reconnecting, the token row lock across processes, profiles, store selection.

The protocol behaviour shared with SQLite is ``tests/outbox/test_store.py`` (parametrised)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from msclkid_middleware.capture.clickid import Click
from msclkid_middleware.config import Settings
from msclkid_middleware.dispatch.tracker import ConversionTracker
from msclkid_middleware.errors import ConfigError, StoreError, ValidationError
from msclkid_middleware.microsoft import RetryPolicy
from msclkid_middleware.outbox import OutboxStore, PostgresProfileStore, open_store
from msclkid_middleware.outbox.postgres import MIGRATIONS, PostgresOutbox, parse_postgres_url
from msclkid_middleware.testing import EmulatorHandle, run_emulator
from tests.outbox.conftest import T0, FakeClock, click_id, new_row, record
from tests.pg_helpers import POSTGRES_URL, Schemas, with_params

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresOutbox]:
    s = PostgresOutbox.from_url(pg_url)
    yield s
    s.close()


def app_connection(schema: str) -> psycopg.Connection[tuple[object, ...]]:
    """The shop's own connection: default (non-autocommit) transactions, its own search_path."""
    conn = psycopg.connect(POSTGRES_URL)
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.orders (id TEXT PRIMARY KEY)").format(sql.Identifier(schema)))
    conn.commit()
    return conn


def insert_order(conn: psycopg.Connection[tuple[object, ...]], schema: str, order_id: str) -> None:
    conn.execute(sql.SQL("INSERT INTO {}.orders VALUES (%s)").format(sql.Identifier(schema)), (order_id,))


# -- URLs, schemas, migrations -------------------------------------------------------------------------
def test_url_options_are_ours_the_rest_goes_to_libpq_and_the_password_is_never_shown() -> None:
    config = parse_postgres_url(
        "postgres://shop:s3cret@db.internal:6432/shop?sslmode=require&schema=msclkid&pool_max_size=12&pool_timeout=3"
    )
    assert config.schema == "msclkid"
    assert (config.pool_min_size, config.pool_max_size, config.pool_timeout) == (1, 12, 3.0)
    assert config.conninfo == "postgres://shop:s3cret@db.internal:6432/shop?sslmode=require"
    assert "s3cret" not in config.safe_url
    assert config.safe_url.startswith("postgres://shop@db.internal:6432/shop?")
    assert "s3cret" not in repr(config)
    # libpq's parameters pass through exactly as written (libpq decodes them), a password there too.
    raw = parse_postgres_url("postgresql://h/db?password=a%2Bb&options=-csearch_path%3Dx&schema=y")
    assert raw.conninfo == "postgresql://h/db?password=a%2Bb&options=-csearch_path%3Dx"
    assert "password" not in raw.safe_url
    # Keyword options (open_store(url, schema=...)) win over the URL's.
    assert parse_postgres_url("postgresql://h/db?schema=a", schema="b").schema == "b"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://h/db?schema=bad-name", id="schema-not-an-identifier"),
        pytest.param("postgresql://h/db?schema=x;DROP", id="schema-injection"),
        pytest.param("postgresql://h/db?pool_max_size=0", id="pool-size-zero"),
        pytest.param("postgresql://h/db?pool_min_size=5&pool_max_size=2", id="min-above-max"),
        pytest.param("postgresql://h/db?pool_timeout=soon", id="timeout-not-a-number"),
    ],
)
def test_bad_url_options_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert info.value.setting == "MSCLKID_STORE_URL"


def test_both_schemes_select_the_postgres_store_and_tables_live_in_the_schema(
    pg_schemas: Schemas, pg_schema: str
) -> None:
    for scheme in ("postgresql", "postgres"):
        url = pg_schemas.store_url(pg_schema, pool_max_size=2).replace("postgresql", scheme, 1)
        store = open_store(url)
        try:
            assert isinstance(store, PostgresOutbox)
            assert isinstance(store, OutboxStore)
            assert store.schema == pg_schema
            assert store.schema_version() == len(MIGRATIONS)
        finally:
            store.close()
    with psycopg.connect(POSTGRES_URL) as conn:
        tables = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (pg_schema,)).fetchall()
        }
        assert {"msclkid_outbox", "msclkid_outbox_meta", "msclkid_tokens", "msclkid_profiles"} <= tables
        assert conn.execute("SELECT to_regclass('public.msclkid_outbox')").fetchone() == (None,)


def test_search_path_in_the_url_selects_the_schema_too(pg_schemas: Schemas, pg_schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    url = with_params(POSTGRES_URL, options=f"-csearch_path={pg_schema}", pool_max_size=2)
    store = open_store(url)
    try:
        assert isinstance(store, PostgresOutbox)
        assert store.schema == pg_schema
        store.enqueue(new_row(1), now=T0)
    finally:
        store.close()
    with psycopg.connect(POSTGRES_URL) as conn:
        query = sql.SQL("SELECT event_id FROM {}.msclkid_outbox").format(sql.Identifier(pg_schema))
        assert conn.execute(query).fetchall() == [("ord_1",)]


def test_concurrent_openers_migrate_once_and_a_newer_schema_is_refused(pg_url: str, pg_schema: str) -> None:
    stores: list[PostgresOutbox] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresOutbox.from_url(pg_url, pool_max_size=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    stores[0].enqueue(new_row(1), now=T0)
    assert all(len(s.find("ord_1")) == 1 for s in stores)
    for s in stores:
        s.close()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {}.msclkid_outbox_meta SET value = value + 1 WHERE name = 'schema_version'").format(
                sql.Identifier(pg_schema)
            )
        )
    with pytest.raises(StoreError) as info:
        PostgresOutbox.from_url(pg_url)
    assert info.value.reason == "schema_too_new"


def test_an_unreachable_server_is_a_typed_store_error() -> None:
    with pytest.raises(StoreError) as info:
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1&pool_timeout=0.3")
    assert info.value.reason == "storage_unavailable"


def test_naive_times_are_refused(store: PostgresOutbox) -> None:
    with pytest.raises(ValidationError):
        store.enqueue(new_row(1), now=datetime(2026, 1, 1))


def test_the_driver_is_imported_only_for_postgres_urls(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from msclkid_middleware.dispatch.tracker import ConversionTracker\n"
        f"t = ConversionTracker(store_url='sqlite:///{tmp_path / 'o.db'}')\n"
        "t.close()\n"
        "assert 'psycopg' not in sys.modules and 'psycopg_pool' not in sys.modules, 'driver imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "msclkid_middleware.outbox.postgres")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an installation without the extra looks like
    with pytest.raises(ConfigError) as info:
        open_store("postgresql://127.0.0.1/test")
    assert "msclkid-middleware[postgres]" in str(info.value)
    assert info.value.setting == "MSCLKID_STORE_URL"


# -- the transactional outbox ----------------------------------------------------------------------------
def test_enqueue_joins_the_applications_transaction(store: PostgresOutbox, pg_schema: str) -> None:
    app = app_connection(pg_schema)
    try:
        # Rolled back together: neither the order nor the conversion exists.
        insert_order(app, pg_schema, "ord_1")
        assert store.enqueue(new_row(1), now=T0, connection=app).created is True
        assert store.find("ord_1") == []  # invisible to others before the app commits
        app.rollback()
        assert store.find("ord_1") == []
        assert store.open_count() == 0

        # Committed together; a duplicate inside the same transaction neither inserts nor aborts it.
        insert_order(app, pg_schema, "ord_2")
        first = store.enqueue(new_row(2), now=T0, connection=app)
        again = store.enqueue(new_row(2), now=T0, connection=app)
        assert (first.created, again.created, again.row.id) == (True, False, first.row.id)
        insert_order(app, pg_schema, "ord_3")  # the transaction is still usable
        app.commit()
        (row,) = store.find("ord_2")
        assert row.state == "pending"
        assert store.open_count() == 1
    finally:
        app.close()


def test_record_offline_joins_the_shops_transaction(
    ms: EmulatorHandle, pg_url: str, pg_schema: str, clock: FakeClock
) -> None:
    tracker = ConversionTracker(settings=Settings.from_env(ms.env), store_url=pg_url, clock=clock)
    app = app_connection(pg_schema)
    try:
        with app.transaction():
            insert_order(app, pg_schema, "ord_1")
            record(tracker, clock, 1, connection=app)
            record(tracker, clock, 2, connection=app)

        def failing_checkout() -> None:
            with app.transaction():
                record(tracker, clock, 3, connection=app)
                raise RuntimeError("payment declined")  # after recording: the conversion goes too

        with pytest.raises(RuntimeError):
            failing_checkout()
        app.commit()
        assert [tracker.status(f"ord_{n}").state for n in (1, 2)] == ["pending", "pending"]
        assert tracker.store.find("ord_3") == []
        assert tracker.flush().delivered == 2
        assert len(ms.received("offline", outcome="accepted")) == 2
    finally:
        app.close()
        tracker.close()


def test_another_drivers_connection_is_refused(store: PostgresOutbox, tmp_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "x.db")
    with pytest.raises(ConfigError):
        store.enqueue(new_row(1), now=T0, connection=conn)
    conn.close()


# -- reconnecting ---------------------------------------------------------------------------------------
def test_connections_killed_by_the_server_are_replaced_transparently(pg_url: str, pg_schema: str) -> None:
    store = PostgresOutbox.from_url(with_params(pg_url, application_name=pg_schema, pool_min_size=2))
    try:
        store.enqueue(new_row(1), now=T0)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            # Every session of this store's pool: what a failover or a restart does to idle connections.
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                (pg_schema,),
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        assert store.enqueue(new_row(2), now=T0).created is True
        assert store.open_count() == 2
        assert len(store.claim(owner="w", limit=10, now=T0, lease_seconds=60)) == 2
        assert store.metrics().get("store_errors", 0) == 0
    finally:
        store.close()


def test_a_forked_child_opens_its_own_pool_and_the_parent_keeps_working(store: PostgresOutbox) -> None:
    store.enqueue(new_row(1), now=T0)  # the parent's pool is open and in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = False
        try:
            ok = store.enqueue(new_row(2), now=T0).created and len(store.find("ord_1")) == 1
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    # The child never closed the parent's sessions: the parent's pooled connections still work.
    assert store.enqueue(new_row(3), now=T0).created is True
    assert store.open_count() == 3
    assert store.metrics().get("store_errors", 0) == 0


# -- tokens: the row lock across processes ---------------------------------------------------------------
_SAVER = """
import random, sys
from datetime import datetime, UTC, timedelta
from msclkid_middleware.outbox.postgres import PostgresOutbox
from msclkid_middleware.outbox import TokenRecord
store = PostgresOutbox.from_url(sys.argv[1], pool_max_size=1)
worker, workers, rounds = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = datetime(2026, 11, 28, tzinfo=UTC)
serials = list(range(worker, workers * rounds, workers))
random.shuffle(serials)  # late, out-of-order saves: the slow process finishing after a newer refresh
for serial in serials:
    store.save_token("microsoft", TokenRecord(f"rt-{serial}", t0 + timedelta(seconds=serial), serial))
    seen = store.load_token("microsoft")
    assert seen is not None and seen.serial >= serial, (seen, serial)
store.close()
"""


def test_concurrent_token_saves_from_several_processes_never_regress(store: PostgresOutbox, pg_url: str) -> None:
    workers, rounds = 4, 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SAVER, pg_url, str(w), str(workers), str(rounds)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    final = store.load_token("microsoft")
    assert final is not None
    assert (final.serial, final.refresh_token) == (workers * rounds - 1, f"rt-{workers * rounds - 1}")


def test_the_rotated_refresh_token_survives_a_restart_and_is_shared(pg_url: str, clock: FakeClock) -> None:
    with run_emulator(invalidate_used_refresh_tokens=True) as ms:
        settings = Settings.from_env(ms.env)
        policy = RetryPolicy(rng=lambda: 0.5)
        first = ConversionTracker(settings=settings, store_url=pg_url, clock=clock, retry_policy=policy)
        record(first, clock, 1)
        assert first.flush().delivered == 1
        first.close()
        # The seed in MSADS_REFRESH_TOKEN is now invalid (strict rotation); PostgreSQL holds the new one.
        second = ConversionTracker(settings=settings, store_url=pg_url, clock=clock, retry_policy=policy)
        try:
            record(second, clock, 2)
            assert second.flush().delivered == 1
            stored = second.store.load_token("microsoft")
            assert stored is not None
            assert stored.refresh_token != ms.env["MSADS_REFRESH_TOKEN"]
            assert stored.serial >= 1
        finally:
            second.close()


# -- profiles --------------------------------------------------------------------------------------------
def test_profile_store_keeps_the_newest_click_per_visitor(pg_url: str, store: PostgresOutbox) -> None:
    own = PostgresProfileStore(pg_url)
    shared = PostgresProfileStore(store)  # the outbox's pool and schema
    try:
        assert own.get("user-1") is None
        older = Click(click_id(1), datetime(2026, 11, 1, tzinfo=UTC), "url")
        newer = Click(click_id(2), datetime(2026, 11, 2, tzinfo=UTC), "snippet")
        own.put("user-1", newer)
        shared.put("user-1", older)  # a slower host writing an older click: ignored
        got = shared.get("user-1")
        assert got == Click(click_id(2), newer.captured_at, "profile")
        own.put("user-1", Click(click_id(3), newer.captured_at + timedelta(seconds=1), "url"))
        assert own.get("user-1") == Click(click_id(3), newer.captured_at + timedelta(seconds=1), "profile")
        assert own.get("user-2") is None
        with pytest.raises(ValueError):
            own.put("", newer)
    finally:
        own.close()
        shared.close()


def test_profile_store_failures_are_store_errors() -> None:
    broken = PostgresProfileStore("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1&pool_timeout=0.3")
    with pytest.raises(StoreError):
        broken.get("user-1")
    broken.close()


# -- selection from the environment ------------------------------------------------------------------------
def test_tracker_from_env_uses_postgres(ms: EmulatorHandle, pg_url: str, clock: FakeClock) -> None:
    tracker = ConversionTracker.from_env({**ms.env, "MSCLKID_STORE_URL": pg_url}, clock=clock)
    try:
        assert isinstance(tracker.store, PostgresOutbox)
        assert "postgres" in repr(tracker)
        record(tracker, clock, 7)
        assert tracker.flush().delivered == 1
        assert tracker.status("ord_7").delivered
    finally:
        tracker.close()


def test_two_web_hosts_share_click_profiles_through_postgres(pg_url: str) -> None:
    """A visitor clicks an ad on host A (phone) and buys on host B (laptop, no cookie)."""
    from msclkid_middleware import MsclkidMiddleware, get_click
    from msclkid_middleware.capture.consent import ConsentPolicy
    from tests.wsgi_helpers import HEX, Clock, call, make_environ

    def shop(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        click = get_click(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{click.msclkid if click else '-'}|{click.source if click else '-'}".encode()]

    def host(store: PostgresProfileStore) -> MsclkidMiddleware:
        return MsclkidMiddleware(
            shop,
            secret_keys=["pg-profile-test-secret"],
            consent=ConsentPolicy(default="granted"),
            visitor_id=lambda environ: "user-7",
            profile_store=store,
            clock=Clock(),
        )

    store_a, store_b = PostgresProfileStore(pg_url), PostgresProfileStore(pg_url)
    try:
        landing = call(host(store_a), make_environ(query=f"msclkid={HEX}"))
        assert landing.body.decode() == f"{HEX}|url"
        checkout = call(host(store_b), make_environ("/checkout"))
        assert checkout.body.decode() == f"{HEX}|profile"
    finally:
        store_a.close()
        store_b.close()


_REFRESHER = """
import sys
from msclkid_middleware.microsoft import RefreshTokenProvider
from msclkid_middleware.outbox.postgres import PostgresOutbox
from msclkid_middleware.outbox.tokens import OutboxTokenStore
client_id, secret, seed, token_url, url, rounds = sys.argv[1:]
store = PostgresOutbox.from_url(url, pool_max_size=1)
provider = RefreshTokenProvider(client_id, secret, refresh_token=seed, token_url=token_url,
                                token_store=OutboxTokenStore(store))
provider.access_token()
for _ in range(int(rounds)):
    provider.force_refresh()
provider.close()
store.close()
print("ok")
"""


def test_hosts_refreshing_at_once_share_one_token_chain(pg_url: str, store: PostgresOutbox) -> None:
    """Four processes (hosts) force refreshes against the emulator through the PostgreSQL token store:
    single-flight across processes, the stored token never goes back, and it is the newest issued."""
    processes, rounds = 4, 4
    with run_emulator(invalidate_used_refresh_tokens=True) as ms:
        env = ms.env
        args = [env["MSADS_CLIENT_ID"], env["MSADS_CLIENT_SECRET"], env["MSADS_REFRESH_TOKEN"], env["MSADS_TOKEN_URL"]]
        observed: list[int] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                token = store.load_token("microsoft")
                if token is not None and (not observed or observed[-1] != token.serial):
                    observed.append(token.serial)
                stop.wait(0.005)

        poller = threading.Thread(target=reader)
        poller.start()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _REFRESHER, *args, pg_url, str(rounds)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        stop.set()
        poller.join(10)
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
            assert out.strip() == "ok"
        issued = [r for r in ms.token_log() if r.outcome == "issued"]
        final = store.load_token("microsoft")
        assert final is not None
        newest = max(issued, key=lambda r: r.serial or 0)
        assert final.refresh_token == newest.refresh_token
        assert final.serial == len(issued)
        # Single flight: every refresh used the token issued just before it (no fork in the chain).
        assert [r.parent_serial for r in issued[1:]] == [r.serial for r in issued[:-1]]
        assert observed == sorted(observed)  # never went back
