"""Behaviour of every OutboxStore, written against the protocol only (no backend internals)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from msclkid_middleware.errors import OutboxFull, ValidationError
from msclkid_middleware.outbox import NewRow, OutboxStore, Outcome, TokenRecord

from .conftest import T0, StoreFactory, new_row

LEASE = 60.0


def test_enqueue_stores_every_field_and_is_visible_to_another_handle(
    store: OutboxStore, make_store: StoreFactory
) -> None:
    result = store.enqueue(new_row(1), now=T0)
    assert result.created is True
    row = result.row
    assert row.id > 0
    assert (row.kind, row.account, row.event_id, row.idempotency_key) == ("offline", "1000", "ord_1", "offline:key-1")
    assert row.payload["MicrosoftClickId"] == "c1"
    assert row.consent == {"state": "granted", "basis": "default"}
    assert row.state == "pending"
    assert row.attempts == 0
    assert row.next_attempt_at == T0
    assert row.created_at == row.updated_at == T0
    assert row.expires_at == T0 + timedelta(days=90)
    assert row.lease_token is None
    assert row.tracking_id is None
    assert row.warnings == ()
    # Committed on return: a separate handle (another process in production) sees it.
    other = make_store()
    assert other.get(row.id) == row
    assert other.find("ord_1") == [row]
    assert other.open_count() == 1


def test_same_idempotency_key_returns_the_existing_row(store: OutboxStore) -> None:
    first = store.enqueue(new_row(1), now=T0)
    again = store.enqueue(new_row(1, event_id="ord_other", payload={"x": 1}), now=T0 + timedelta(seconds=5))
    assert again.created is False
    assert again.row == first.row
    assert store.open_count() == 1
    assert store.metrics()["enqueued"] == 1
    assert store.metrics()["duplicates"] == 1


@pytest.mark.parametrize(
    ("kind", "unique"),
    [
        pytest.param("offline", True, id="offline-once-per-event"),
        pytest.param("uet", True, id="uet-once-per-event"),
        pytest.param("offline_adjustment", False, id="adjustments-many-per-event"),
        pytest.param("online_adjustment", False, id="online-adjustments-many-per-event"),
    ],
)
def test_event_id_uniqueness_per_kind(store: OutboxStore, kind: str, unique: bool) -> None:
    first = store.enqueue(new_row(1, kind=kind), now=T0)
    second = store.enqueue(new_row(1, kind=kind, idempotency_key="other-key"), now=T0)
    assert second.created is (not unique)
    assert (second.row.id == first.row.id) is unique
    # A different account is a different event.
    third = store.enqueue(new_row(1, kind=kind, account="2000", idempotency_key="third-key"), now=T0)
    assert third.created is True


def test_new_row_validates_its_fields() -> None:
    with pytest.raises(ValidationError) as info:
        new_row(1, kind="email")
    assert info.value.field == "kind"
    with pytest.raises(ValidationError) as info:
        new_row(1, event_id="")
    assert info.value.field == "event_id"
    with pytest.raises(ValidationError):
        new_row(1, state="delivered")


def test_claim_leases_due_rows_once(store: OutboxStore) -> None:
    ids = [store.enqueue(new_row(n), now=T0).row.id for n in range(1, 6)]
    claimed = store.claim(owner="w1", limit=3, now=T0, lease_seconds=LEASE)
    assert [r.id for r in claimed] == ids[:3]
    tokens = {r.lease_token for r in claimed}
    assert len(tokens) == 1
    assert None not in tokens
    for r in claimed:
        assert r.state == "in_flight"
        assert r.attempts == 1
        assert r.lease_owner == "w1"
        assert r.lease_expires_at == T0 + timedelta(seconds=LEASE)
    rest = store.claim(owner="w2", limit=10, now=T0, lease_seconds=LEASE)
    assert [r.id for r in rest] == ids[3:]
    assert rest[0].lease_token not in tokens
    assert store.claim(owner="w3", limit=10, now=T0 + timedelta(seconds=LEASE - 1), lease_seconds=LEASE) == []


def test_expired_lease_is_claimable_again_and_the_old_lease_is_fenced(store: OutboxStore) -> None:
    row_id = store.enqueue(new_row(1), now=T0).row.id
    (first,) = store.claim(owner="crashed", limit=10, now=T0, lease_seconds=LEASE)
    later = T0 + timedelta(seconds=LEASE + 1)
    (second,) = store.claim(owner="w2", limit=10, now=later, lease_seconds=LEASE)
    assert second.id == row_id
    assert second.attempts == 2
    assert second.lease_token != first.lease_token
    assert first.lease_token is not None
    assert second.lease_token is not None
    # The crashed worker wakes up: its acknowledgement must not land.
    assert store.settle([Outcome(row_id, first.lease_token, "delivered", tracking_id="stale")], now=later) == 0
    assert store.get(row_id).state == "in_flight"  # type: ignore[union-attr]
    assert store.metrics()["stale_acks"] == 1
    assert store.settle([Outcome(row_id, second.lease_token, "delivered", tracking_id="t-2")], now=later) == 1
    done = store.get(row_id)
    assert done is not None
    assert done.state == "delivered"
    assert done.tracking_id == "t-2"
    # Settling twice with the same (now released) token is a no-op too.
    assert store.settle([Outcome(row_id, second.lease_token, "rejected")], now=later) == 0


def _claim_one(store: OutboxStore) -> tuple[int, str]:
    (row,) = store.claim(owner="w", limit=1, now=T0, lease_seconds=LEASE)
    assert row.lease_token is not None
    return row.id, row.lease_token


def test_settle_delivered_records_tracking_id_and_warnings(store: OutboxStore) -> None:
    store.enqueue(new_row(1), now=T0)
    row_id, token = _claim_one(store)
    later = T0 + timedelta(seconds=3)
    outcome = Outcome(row_id, token, "delivered", tracking_id="trk-1", warnings=("InvalidSha256: data[0].userData.em",))
    assert store.settle([outcome], now=later) == 1
    row = store.get(row_id)
    assert row is not None
    assert (row.state, row.tracking_id, row.warnings) == ("delivered", "trk-1", ("InvalidSha256: data[0].userData.em",))
    assert row.delivered_at == later == row.updated_at
    assert row.lease_token is None
    assert row.lease_owner is None
    assert row.lease_expires_at is None
    assert store.open_count() == 0


@pytest.mark.parametrize("state", ["rejected", "dead"])
def test_settle_final_failure_keeps_microsofts_code_and_message(store: OutboxStore, state: str) -> None:
    store.enqueue(new_row(1), now=T0)
    row_id, token = _claim_one(store)
    outcome = Outcome(
        row_id, token, state, error_code="5604 OfflineConversionMicrosoftClickIdInvalid", error_message="bad"
    )  # type: ignore[arg-type]
    assert store.settle([outcome], now=T0) == 1
    row = store.get(row_id)
    assert row is not None
    assert (row.state, row.last_error_code, row.last_error_message) == (state, outcome.error_code, "bad")
    assert row.attempts == 1
    assert store.claim(owner="w", limit=10, now=T0 + timedelta(days=1), lease_seconds=LEASE) == []


def test_retry_is_not_due_before_its_time(store: OutboxStore) -> None:
    store.enqueue(new_row(1), now=T0)
    row_id, token = _claim_one(store)
    retry_at = T0 + timedelta(seconds=30)
    outcome = Outcome(row_id, token, "pending", next_attempt_at=retry_at, error_code="429", error_message="throttled")
    assert store.settle([outcome], now=T0) == 1
    assert store.next_due() == retry_at
    assert store.claim(owner="w", limit=10, now=retry_at - timedelta(seconds=1), lease_seconds=LEASE) == []
    (row,) = store.claim(owner="w", limit=10, now=retry_at, lease_seconds=LEASE)
    assert row.attempts == 2
    assert row.last_error_code == "429"


def test_release_with_refund_gives_the_attempt_back(store: OutboxStore) -> None:
    store.enqueue(new_row(1), now=T0)
    row_id, token = _claim_one(store)
    assert store.settle([Outcome(row_id, token, "pending", refund_attempt=True)], now=T0) == 1
    row = store.get(row_id)
    assert row is not None
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 0, T0)


def test_adjustment_waits_for_its_original(store: OutboxStore) -> None:
    original = store.enqueue(new_row(1), now=T0).row
    adj = store.enqueue(new_row(1, kind="offline_adjustment", idempotency_key="adj-1", depends_on=original.id), now=T0)
    (claimed,) = store.claim(owner="w", limit=10, now=T0, lease_seconds=LEASE)
    assert claimed.id == original.id  # the adjustment is not due yet
    assert store.claim(owner="w", limit=10, now=T0 + timedelta(seconds=LEASE * 2), lease_seconds=LEASE)[0].id == (
        original.id
    )  # lease expired: the original again, still not the adjustment
    (again,) = store.find("ord_1", kind="offline")
    assert again.lease_token is not None
    store.settle([Outcome(original.id, again.lease_token, "delivered")], now=T0)
    later = T0 + timedelta(seconds=LEASE * 3)
    (adjustment,) = store.claim(owner="w", limit=10, now=later, lease_seconds=LEASE)
    assert adjustment.id == adj.row.id


@pytest.mark.parametrize("final", ["rejected", "dead"])
def test_adjustment_of_a_failed_original_goes_dead(store: OutboxStore, final: str) -> None:
    original = store.enqueue(new_row(1), now=T0).row
    adj = store.enqueue(new_row(1, kind="offline_adjustment", idempotency_key="adj-1", depends_on=original.id), now=T0)
    row_id, token = _claim_one(store)
    store.settle([Outcome(row_id, token, final, error_code="x")], now=T0)  # type: ignore[arg-type]
    assert store.fail_orphans(now=T0) == 1
    row = store.get(adj.row.id)
    assert row is not None
    assert row.state == "dead"
    assert row.last_error_code == "original_not_delivered"
    assert row.last_error_message is not None
    assert final in row.last_error_message
    assert store.fail_orphans(now=T0) == 0


def test_suppressed_rows_are_kept_but_never_claimed(store: OutboxStore) -> None:
    row = store.enqueue(new_row(1, state="suppressed", error_code="consent_denied"), now=T0).row
    assert row.state == "suppressed"
    assert row.last_error_code == "consent_denied"
    assert store.open_count() == 0
    assert store.claim(owner="w", limit=10, now=T0, lease_seconds=LEASE) == []
    assert store.next_due() is None


def test_pause_and_resume_an_account(store: OutboxStore) -> None:
    a = store.enqueue(new_row(1), now=T0).row
    b = store.enqueue(new_row(2, kind="offline_adjustment"), now=T0).row
    u = store.enqueue(new_row(3, kind="uet", account="tag-1"), now=T0).row
    other = store.enqueue(new_row(4, account="2000"), now=T0).row
    assert store.pause(account="1000", kinds=("offline", "offline_adjustment"), reason="reconsent", now=T0) == 2
    assert sorted(store.paused_accounts()) == [
        ("1000", "offline", "reconsent"),
        ("1000", "offline_adjustment", "reconsent"),
    ]
    paused = store.get(a.id)
    assert paused is not None
    assert paused.state == "paused"
    assert paused.paused_reason == "reconsent"
    assert store.open_count() == 4  # paused rows still count against max_pending
    claimed = store.claim(owner="w", limit=10, now=T0, lease_seconds=LEASE)
    assert sorted(r.id for r in claimed) == sorted([u.id, other.id])
    later = T0 + timedelta(minutes=5)
    assert store.resume(account="1000", now=later) == 2
    resumed = store.get(b.id)
    assert resumed is not None
    assert (resumed.state, resumed.paused_reason, resumed.next_attempt_at) == (
        "pending",
        None,
        later,
    )
    assert store.paused_accounts() == []


def test_settle_paused_parks_a_claimed_row_without_burning_the_attempt(store: OutboxStore) -> None:
    store.enqueue(new_row(1), now=T0)
    row_id, token = _claim_one(store)
    outcome = Outcome(
        row_id, token, "paused", error_code="reconsent_required", error_message="run msclkid auth", refund_attempt=True
    )
    assert store.settle([outcome], now=T0) == 1
    row = store.get(row_id)
    assert row is not None
    assert (row.state, row.attempts, row.paused_reason) == ("paused", 0, "run msclkid auth")
    assert store.resume(now=T0) == 1


def test_outbox_full_rejects_new_rows_and_counts_them(make_store: StoreFactory) -> None:
    store = make_store(max_pending=2)
    store.enqueue(new_row(1), now=T0)
    store.enqueue(new_row(2), now=T0)
    for n in (3, 4):
        with pytest.raises(OutboxFull) as info:
            store.enqueue(new_row(n), now=T0)
        assert info.value.limit == 2
        assert info.value.reason == "outbox_full"
    assert store.metrics()["overflow_rejected"] == 2
    assert store.find("ord_3") == []
    # A duplicate of a stored event is still answered, and a suppressed row needs no room.
    assert store.enqueue(new_row(1), now=T0).created is False
    assert store.enqueue(new_row(5, state="suppressed"), now=T0).created is True
    # Once something is delivered there is room again.
    row_id, token = _claim_one(store)
    store.settle([Outcome(row_id, token, "delivered")], now=T0)
    assert store.enqueue(new_row(3), now=T0).created is True
    assert store.open_count() == 2


def test_prune_removes_old_terminal_rows_only(store: OutboxStore) -> None:
    old = store.enqueue(new_row(1), now=T0).row
    keep_open = store.enqueue(new_row(2), now=T0).row
    referenced = store.enqueue(new_row(3), now=T0).row
    (o1,) = store.claim(owner="w", limit=1, now=T0, lease_seconds=LEASE)
    store.settle([Outcome(o1.id, o1.lease_token or "", "delivered")], now=T0)
    store.claim(owner="w", limit=1, now=T0, lease_seconds=LEASE)  # keep_open stays in flight
    (o3,) = store.claim(owner="w", limit=1, now=T0, lease_seconds=LEASE)
    store.settle([Outcome(o3.id, o3.lease_token or "", "delivered")], now=T0)
    store.enqueue(new_row(3, kind="offline_adjustment", idempotency_key="adj", depends_on=referenced.id), now=T0)
    assert store.prune(before=T0) == 0  # nothing is older than the cut-off yet
    assert store.prune(before=T0 + timedelta(days=1)) == 1
    assert store.get(old.id) is None
    assert store.get(keep_open.id) is not None
    assert store.get(referenced.id) is not None  # an open adjustment still needs it


def test_counts_group_by_kind_goal_state_and_code(store: OutboxStore) -> None:
    for n in range(1, 4):
        store.enqueue(new_row(n), now=T0)
    store.enqueue(new_row(4, conversion_name="Lead"), now=T0)
    claimed = store.claim(owner="w", limit=2, now=T0, lease_seconds=LEASE)
    store.settle(
        [
            Outcome(claimed[0].id, claimed[0].lease_token or "", "delivered"),
            Outcome(claimed[1].id, claimed[1].lease_token or "", "rejected", error_code="5604"),
        ],
        now=T0,
    )
    got = {(c.kind, c.conversion_name, c.state, c.error_code): c.count for c in store.counts()}
    assert got == {
        ("offline", "Purchase", "delivered", None): 1,
        ("offline", "Purchase", "rejected", "5604"): 1,
        ("offline", "Purchase", "pending", None): 1,
        ("offline", "Lead", "pending", None): 1,
    }


def test_scan_pages_through_every_row_in_id_order_with_filters(store: OutboxStore) -> None:
    for n in range(1, 8):
        store.enqueue(new_row(n), now=T0 + timedelta(minutes=n))
    store.enqueue(new_row(8, kind="uet", account="tag"), now=T0 + timedelta(minutes=8))
    everything = list(store.scan(page_size=3))
    assert [r.event_id for r in everything] == [f"ord_{n}" for n in range(1, 9)]
    assert [r.id for r in everything] == sorted(r.id for r in everything)
    assert everything[0].payload["MicrosoftClickId"] == "c1"
    recent = [r.event_id for r in store.scan(since=T0 + timedelta(minutes=6), page_size=1)]
    assert recent == ["ord_6", "ord_7", "ord_8"]
    assert [r.event_id for r in store.scan(kinds=["uet"])] == ["ord_8"]
    assert list(store.scan(kinds=[])) == []
    # A page boundary exactly at the end, and writes between pages, do not lose or repeat rows.
    seen = []
    for row in store.scan(page_size=4):
        seen.append(row.event_id)
        if row.event_id == "ord_2":
            store.enqueue(new_row(9), now=T0)
    assert seen == [f"ord_{n}" for n in range(1, 10)]


def test_retry_dead_requeues(store: OutboxStore) -> None:
    store.enqueue(new_row(1), now=T0)
    store.enqueue(new_row(2), now=T0)
    claimed = store.claim(owner="w", limit=2, now=T0, lease_seconds=LEASE)
    store.settle(
        [
            Outcome(claimed[0].id, claimed[0].lease_token or "", "dead", error_code="attempts_exhausted"),
            Outcome(claimed[1].id, claimed[1].lease_token or "", "rejected", error_code="5604"),
        ],
        now=T0,
    )
    later = T0 + timedelta(hours=1)
    assert store.retry_dead(now=later) == 1
    row = store.get(claimed[0].id)
    assert row is not None
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 0, later)
    assert store.retry_dead(now=later, include_rejected=True, event_id="ord_2") == 1
    assert store.retry_dead(now=later, include_rejected=True) == 0


def test_next_due_tracks_pending_and_leases(store: OutboxStore) -> None:
    assert store.next_due() is None
    store.enqueue(new_row(1), now=T0)
    assert store.next_due() == T0
    store.claim(owner="w", limit=1, now=T0, lease_seconds=LEASE)
    assert store.next_due() == T0 + timedelta(seconds=LEASE)


def test_concurrent_claimers_never_share_a_row(store: OutboxStore, make_store: StoreFactory) -> None:
    total = 600
    for n in range(total):
        store.enqueue(new_row(n), now=T0)
    seen: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        handle = make_store() if name.endswith("b") else store
        try:
            while True:
                rows = handle.claim(owner=name, limit=25, now=T0, lease_seconds=LEASE)
                if not rows:
                    return
                handle.settle([Outcome(r.id, r.lease_token or "", "delivered") for r in rows], now=T0)
                with lock:
                    seen.extend(r.id for r in rows)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}{'ab'[i % 2]}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(seen) == total
    assert Counter(seen).most_common(1)[0][1] == 1
    assert store.open_count() == 0


def test_tokens_are_saved_and_never_regress(store: OutboxStore, make_store: StoreFactory) -> None:
    assert store.load_token("microsoft") is None
    newer = TokenRecord("rt-2", T0 + timedelta(minutes=1), serial=2, data={"scope": "s"})
    assert store.save_token("microsoft", newer) is True
    # An older token (a slow process finishing late) or the same one again changes nothing.
    assert store.save_token("microsoft", TokenRecord("rt-1", T0 + timedelta(minutes=5), serial=1)) is False
    assert store.save_token("microsoft", newer) is False
    assert make_store().load_token("microsoft") == newer
    # Same serial, later issue time (an access-token-only update) is newer.
    newest = TokenRecord("rt-3", T0 + timedelta(minutes=2), serial=2)
    assert store.save_token("microsoft", newest) is True
    assert store.load_token("microsoft") == newest
    assert store.load_token("other") is None


def test_token_lock_is_single_flight(store: OutboxStore, make_store: StoreFactory) -> None:
    other = make_store()
    order: list[str] = []
    entered = threading.Event()

    def holder() -> None:
        with store.token_lock("microsoft"):
            order.append("a-in")
            entered.set()
            # Give the second thread time to block on the lock.
            threading.Event().wait(0.3)
            order.append("a-out")

    def waiter() -> None:
        entered.wait(5)
        with other.token_lock("microsoft"):
            order.append("b-in")

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["a-in", "a-out", "b-in"]
    # Holding the token lock never blocks the outbox itself.
    with store.token_lock("microsoft"):
        assert other.enqueue(new_row(1), now=T0).created is True


def test_unknown_kind_in_a_row_is_refused_before_the_store() -> None:
    with pytest.raises(ValidationError):
        NewRow(kind="sms", account="1", event_id="e", idempotency_key="k", payload={})  # type: ignore[arg-type]


def test_claim_can_be_limited_to_the_kinds_a_worker_can_send(store: OutboxStore) -> None:
    offline = store.enqueue(new_row(1), now=T0).row
    uet = store.enqueue(new_row(2, kind="uet", account="tag"), now=T0).row
    assert store.claim(owner="w", limit=10, now=T0, lease_seconds=LEASE, kinds=()) == []
    (claimed,) = store.claim(owner="w", limit=10, now=T0, lease_seconds=LEASE, kinds=("uet",))
    assert claimed.id == uet.id
    (rest,) = store.claim(owner="w", limit=10, now=T0, lease_seconds=LEASE, kinds=None)
    assert rest.id == offline.id


def test_transaction_commits_a_batch_of_enqueues_at_once(store: OutboxStore, make_store: StoreFactory) -> None:
    other = make_store()
    with store.transaction() as conn:
        first = store.enqueue(new_row(1), now=T0, connection=conn)
        store.enqueue(new_row(2), now=T0, connection=conn)
        # A duplicate inside the same transaction is found, not inserted twice.
        assert store.enqueue(new_row(1), now=T0, connection=conn).created is False
        assert first.created is True
        # Nothing is visible to another handle before the commit.
        assert other.find("ord_1") == []
    assert [r.event_id for r in other.scan()] == ["ord_1", "ord_2"]
    assert other.open_count() == 2
    # The store's own methods work after the block (no transaction or lock is left behind).
    assert store.enqueue(new_row(3), now=T0).created is True


def test_transaction_rolls_back_the_whole_batch_on_error(store: OutboxStore) -> None:
    def batch_that_fails() -> None:
        with store.transaction() as conn:
            store.enqueue(new_row(1), now=T0, connection=conn)
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        batch_that_fails()
    assert store.find("ord_1") == []
    assert store.open_count() == 0
    # One batch after another, as an import commits them.
    for batch in ((1, 2), (3,)):
        with store.transaction() as conn:
            for n in batch:
                store.enqueue(new_row(n), now=T0, connection=conn)
    assert store.open_count() == 3


# -- delivery and bulk paths (issue 21): claim_batch, grouped settles, enqueue_many ----------------------------


def test_claim_batch_leases_like_claim_and_hands_over_the_stored_json(store: OutboxStore) -> None:
    import json

    store.enqueue(new_row(1, payload={"ConversionTime": "2026-11-28T11:00:00Z", "MicrosoftClickId": "c1"}), now=T0)
    adjusted = {"AdjustmentTime": "2026-11-28T11:30:00Z", "ConversionTime": "2026-11-28T11:00:00Z"}
    store.enqueue(new_row(2, kind="offline_adjustment", payload=adjusted), now=T0)
    store.enqueue(new_row(3, kind="uet", payload={"eventTime": int(T0.timestamp()) - 60, "eventId": "e3"}), now=T0)
    store.enqueue(new_row(4, payload={"MicrosoftClickId": "c4"}), now=T0)
    online = {"AdjustmentTime": "2026-11-28T11:45:00Z", "TransactionId": "t5"}
    store.enqueue(new_row(5, kind="online_adjustment", payload=online), now=T0)
    # Each kind's own times only: an offline conversion has no AdjustmentTime (one here is not read).
    store.enqueue(new_row(6, payload={"ConversionTime": "2026-11-28T10:00:00Z", "AdjustmentTime": "x"}), now=T0)
    claimed = store.claim_batch(owner="w", limit=10, now=T0, lease_seconds=LEASE)
    assert [c.event_id for c in claimed] == ["ord_1", "ord_2", "ord_3", "ord_4", "ord_5", "ord_6"]
    assert len({c.lease_token for c in claimed}) == 1
    assert all(c.attempts == 1 and c.created_at == T0 for c in claimed)
    assert json.loads(claimed[0].payload_json) == {"ConversionTime": "2026-11-28T11:00:00Z", "MicrosoftClickId": "c1"}
    assert claimed[0].event_time is not None
    assert claimed[0].event_time.isoformat() == "2026-11-28T11:00:00+00:00"
    assert claimed[1].event_time is not None
    assert claimed[1].event_time.isoformat() == "2026-11-28T11:30:00+00:00"
    assert claimed[2].event_time == T0.replace(microsecond=0) - timedelta(seconds=60)
    assert claimed[3].event_time is None
    assert claimed[4].event_time is not None
    assert claimed[4].event_time.isoformat() == "2026-11-28T11:45:00+00:00"
    assert claimed[5].event_time is not None
    assert claimed[5].event_time.isoformat() == "2026-11-28T10:00:00+00:00"
    assert store.claim(owner="other", limit=10, now=T0, lease_seconds=LEASE) == []  # leased
    full = store.get(claimed[0].id)
    assert full is not None
    assert (full.state, full.lease_token) == ("in_flight", claimed[0].lease_token)


def test_settle_groups_outcomes_and_fences_each_row(store: OutboxStore) -> None:
    for n in range(1, 7):
        store.enqueue(new_row(n), now=T0)
    claimed = store.claim_batch(owner="w", limit=10, now=T0, lease_seconds=LEASE)
    token = claimed[0].lease_token
    later = T0 + timedelta(minutes=5)
    outcomes = [
        Outcome(claimed[0].id, token, "delivered", tracking_id="t-1"),
        Outcome(claimed[1].id, token, "delivered", tracking_id="t-1"),
        Outcome(claimed[2].id, token, "rejected", error_code="5604", error_message="bad click", tracking_id="t-1"),
        Outcome(claimed[3].id, token, "pending", next_attempt_at=later, error_code="HTTP 503", error_message="busy"),
        Outcome(claimed[4].id, "not-the-lease", "delivered", tracking_id="t-1"),  # stale: fenced out
        Outcome(claimed[5].id, token, "pending", refund_attempt=True),
    ]
    assert store.settle(outcomes, now=T0) == 5
    rows = {r.event_id: r for r in store.scan()}
    assert (rows["ord_1"].state, rows["ord_1"].tracking_id, rows["ord_2"].state) == ("delivered", "t-1", "delivered")
    assert (rows["ord_3"].state, rows["ord_3"].last_error_code) == ("rejected", "5604")
    assert (rows["ord_4"].state, rows["ord_4"].next_attempt_at, rows["ord_4"].attempts) == ("pending", later, 1)
    assert rows["ord_5"].state == "in_flight"
    assert (rows["ord_6"].state, rows["ord_6"].attempts) == ("pending", 0)
    assert store.metrics()["stale_acks"] == 1


def test_enqueue_many_skips_what_is_stored_without_lookups(store: OutboxStore) -> None:
    store.enqueue(new_row(1), now=T0)
    batch = [new_row(1), new_row(2), new_row(3), new_row(2, idempotency_key="offline:key-other")]
    assert store.enqueue_many(batch, now=T0) == 2  # ord_1 stored before; ord_2 twice in the batch
    assert sorted(r.event_id for r in store.scan()) == ["ord_1", "ord_2", "ord_3"]
    assert store.open_count() == 3
    assert store.enqueue_many([], now=T0) == 0
    with store.transaction() as conn:
        assert store.enqueue_many([new_row(3), new_row(4)], now=T0, connection=conn) == 1
    assert store.open_count() == 4
    assert store.metrics()["enqueued"] == 4


def test_enqueue_many_beyond_max_pending_stores_nothing_of_the_batch(make_store: StoreFactory) -> None:
    store = make_store(max_pending=3)
    store.enqueue(new_row(1), now=T0)
    with pytest.raises(OutboxFull):
        store.enqueue_many([new_row(2), new_row(3), new_row(4)], now=T0)
    assert store.open_count() == 1
    with store.transaction() as conn:
        store.enqueue(new_row(5), now=T0, connection=conn)
        with pytest.raises(OutboxFull):
            store.enqueue_many([new_row(6), new_row(7)], now=T0, connection=conn)
        # Only the batch was taken back: the caller's transaction goes on.
        assert store.enqueue_many([new_row(8)], now=T0, connection=conn) == 1
    assert sorted(r.event_id for r in store.scan()) == ["ord_1", "ord_5", "ord_8"]


def _open_rows(store: OutboxStore) -> int:
    return sum(1 for r in store.scan() if r.state in ("pending", "in_flight", "paused"))


def test_open_count_follows_every_state_change(store: OutboxStore) -> None:
    """The open-row counter (what ``max_pending`` bounds) equals the rows in an open state after every statement that
    moves rows between open and closed states: a settle that forgot its closed rows, or a retry that forgot the rows
    it reopened, would leave the counter wrong (and, over time, refuse rows for a full outbox that is not)."""

    def check() -> None:
        assert store.open_count() == _open_rows(store)

    rows = [store.enqueue(new_row(n), now=T0).row for n in range(1, 9)]
    store.enqueue(new_row(9, state="suppressed", error_code="consent_denied"), now=T0)
    adj = store.enqueue(
        new_row(1, kind="offline_adjustment", idempotency_key="adj-1", depends_on=rows[2].id), now=T0
    ).row
    check()
    claimed = store.claim_batch(owner="w", limit=6, now=T0, lease_seconds=LEASE)
    assert [c.id for c in claimed] == [r.id for r in rows[:6]]
    check()
    token = claimed[0].lease_token
    later = T0 + timedelta(minutes=5)
    outcomes = [
        Outcome(claimed[0].id, token, "delivered", tracking_id="t"),
        Outcome(claimed[1].id, token, "delivered", tracking_id="t"),
        Outcome(claimed[2].id, token, "rejected", error_code="5604", error_message="bad click"),
        Outcome(claimed[3].id, token, "dead", error_code="attempts_exhausted"),
        Outcome(claimed[4].id, token, "pending", next_attempt_at=later, error_code="HTTP 503"),
        Outcome(claimed[5].id, "not-the-lease", "delivered", tracking_id="t"),  # fenced out: stays open
    ]
    assert store.settle(outcomes, now=T0) == 5
    check()
    assert store.settle([Outcome(claimed[0].id, token, "delivered")], now=T0) == 0  # settled twice: no change
    check()
    # The fenced row's lease expires; it is claimed again (in_flight -> in_flight) and parked (paused).
    (again,) = store.claim_batch(owner="w2", limit=1, now=T0 + timedelta(seconds=LEASE * 2), lease_seconds=LEASE)
    assert again.id == claimed[5].id
    check()
    assert store.settle([Outcome(again.id, again.lease_token, "paused", refund_attempt=True)], now=T0) == 1
    check()
    assert store.pause(account="1000", kinds=("offline",), reason="reconsent", now=T0) >= 1
    check()
    assert store.resume(now=T0) >= 2
    check()
    assert store.fail_orphans(now=T0) == 1  # the adjustment of the rejected row: pending -> dead
    assert store.get(adj.id).state == "dead"  # type: ignore[union-attr]
    check()
    assert store.retry_dead(now=T0, include_rejected=True) == 3  # dead x2, rejected -> pending
    check()
    assert store.prune(before=T0 + timedelta(days=1)) == 3  # the two delivered rows and the suppressed one
    check()
    assert store.open_count() == 7  # every row but the two delivered ones and the suppressed one
