"""Decisions behind share links and the login brake, with a fake clock: no Jupyter, no waiting."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from remote_agent.commands.runtime import Snapshot
from remote_agent.commands.share import link_url, parse_duration, where
from remote_agent.config.settings import Settings
from remote_agent.core.errors import BadInput
from remote_agent.core.home import Home
from remote_agent.jupyter import share_links as shares
from remote_agent.jupyter import throttle as login_throttle
from remote_agent.jupyter.record import JupyterRecord
from remote_agent.jupyter.throttle import LoginThrottle
from remote_agent.tunnel.keeper_config import KeeperConfig, write_keeper_config
from remote_agent.tunnel.state import TunnelState

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the brake on guessing ------------------------------------------------------------------


def test_a_few_mistakes_cost_nothing_then_each_failure_doubles_the_wait() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    waits = [throttle.failed("203.0.113.7") for _ in range(4)]
    assert waits == [0, 0, 0, 0]
    assert throttle.wait("203.0.113.7") == 0
    assert throttle.failed("203.0.113.7") == 5
    clock.now += 2
    assert throttle.wait("203.0.113.7") == 3, "the wait does not count down"
    clock.now += 3
    assert throttle.wait("203.0.113.7") == 0
    assert throttle.failed("203.0.113.7") == 10
    clock.now += 10
    assert throttle.failed("203.0.113.7") == 20


def test_the_wait_stops_growing_at_five_minutes() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    for _ in range(30):
        clock.now += throttle.wait("a")
        last = throttle.failed("a")
    assert last == login_throttle.LONGEST_WAIT == 300


def test_each_address_has_its_own_count_and_a_success_clears_it() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    for _ in range(5):
        throttle.failed("guesser")
    assert throttle.wait("guesser") > 0
    assert throttle.wait("owner") == 0
    throttle.succeeded("guesser")
    assert throttle.wait("guesser") == 0
    assert throttle.failed("guesser") == 0, "the count did not start afresh"


def test_an_address_quiet_for_an_hour_starts_afresh() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    for _ in range(6):
        clock.now += throttle.wait("a")
        throttle.failed("a")
    clock.now += login_throttle.FORGET_AFTER + 1
    assert throttle.wait("a") == 0
    assert throttle.failed("a") == 0


def test_memory_stays_bounded_under_many_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_throttle, "MAX_ADDRESSES", 50)
    clock = FakeClock()
    throttle = LoginThrottle(clock, global_budget=None)  # the per-address table alone
    for i in range(200):
        clock.now += 0.01
        throttle.failed(f"10.0.0.{i}")
    assert len(throttle._addresses) <= 50
    assert throttle.wait("10.0.0.199") == 0  # still counted: 1 failure
    assert ("password", "10.0.0.199") in throttle._addresses


def test_past_the_global_budget_everyone_waits_until_the_rate_falls() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    for i in range(login_throttle.GLOBAL_BUDGET):  # one failure each from many addresses: none waits alone
        clock.now += 1
        assert throttle.failed(f"198.51.100.{i}") == 0
    first_failure = 1001.0
    wait = throttle.wait("203.0.113.99")
    assert wait > 0, "an address never seen before was not slowed past the global budget"
    assert wait == first_failure + login_throttle.GLOBAL_WINDOW - clock.now
    clock.now += wait
    assert throttle.wait("203.0.113.99") == 0, "the brake stayed on after the rate fell"
    throttle.failed("203.0.113.99")
    assert throttle.wait("198.51.100.200") > 0, "a new failure at the limit did not brake again"


def test_rotating_ten_thousand_addresses_gets_no_more_than_the_global_budget() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    tried = 0
    for i in range(10_001):  # the attack of the issue: each address guesses while it may
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        if throttle.wait(address) == 0:
            throttle.failed(address)
            tried += 1
        clock.now += 0.01  # 100 tries a second for 100 s
    assert tried <= 2 * login_throttle.GLOBAL_BUDGET + 1, tried


def test_a_full_table_never_frees_an_address_that_must_still_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_throttle, "MAX_ADDRESSES", 50)
    clock = FakeClock()
    throttle = LoginThrottle(clock, global_budget=None)
    for _ in range(8):
        throttle.failed("203.0.113.7")
    blocked = throttle.wait("203.0.113.7")
    assert blocked == 40
    for i in range(500):
        clock.now += 0.01
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert throttle.wait("203.0.113.7") == pytest.approx(blocked - 5.0), "a blocking record was dropped for room"
    assert len(throttle._addresses) <= 51


def test_an_ipv6_client_is_counted_by_its_64_network() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    for host in range(1, 6):
        throttle.failed(f"2001:db8:1:2::{host:x}")
    assert throttle.wait("2001:db8:1:2:ffff::1") > 0, "another address of the same /64 was not slowed"
    assert throttle.wait("2001:db8:1:3::1") == 0, "the next /64 was slowed too"
    assert login_throttle.client_key("::ffff:203.0.113.7") == "203.0.113.7"


def test_a_valid_link_leaves_the_password_failures_of_its_address() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    for _ in range(2):
        for _ in range(2):
            assert throttle.wait("203.0.113.7") == 0
            throttle.failed("203.0.113.7", login_throttle.PASSWORD)
        throttle.succeeded("203.0.113.7", login_throttle.LINK)
    throttle.failed("203.0.113.7", login_throttle.PASSWORD)
    assert throttle.wait("203.0.113.7") > 0, "link logins in between wiped out the password failures"
    throttle.succeeded("203.0.113.7", login_throttle.PASSWORD)
    assert throttle.wait("203.0.113.7") == 0


def test_unlock_clears_every_count_and_is_noticed_once(tmp_path: Path) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    unlocks = login_throttle.Unlocks(tmp_path)
    for i in range(40):
        throttle.failed("203.0.113.7" if i < 10 else f"10.0.0.{i}")
    assert throttle.wait("192.0.2.1") > 0
    assert not unlocks.requested()
    path = login_throttle.request_unlock(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert unlocks.requested()
    assert not unlocks.requested(), "one unlock was seen twice"
    throttle.clear()
    assert throttle.wait("203.0.113.7") == 0
    assert throttle.wait("192.0.2.1") == 0
    login_throttle.request_unlock(tmp_path)
    assert unlocks.requested(), "a second unlock went unnoticed"


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"), [("90s", 90), ("30m", 1800), ("8h", 28800), ("7d", 604800), ("24h", 86400)]
)
def test_durations(raw: str, seconds: int) -> None:
    assert parse_duration(raw) == timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["", "0s", "24", "h", "1.5h", "3w", "-1d", "91d"])
def test_bad_durations(raw: str) -> None:
    with pytest.raises(BadInput):
        parse_duration(raw)


def test_the_link_carries_its_secret_only_in_the_token_parameter() -> None:
    assert link_url("https://a.ngrok.app/", "S3cr-et_") == "https://a.ngrok.app/login?next=%2F&token=S3cr-et_"


# -- the record file -------------------------------------------------------------------------------


def test_only_a_hash_of_the_secret_is_recorded_in_a_private_file(tmp_path: Path) -> None:
    share, secret = shares.create(tmp_path, "ana", timedelta(hours=1), T0)
    assert len(secret) >= 40
    text = (tmp_path / "shares.json").read_text()
    assert secret not in text
    assert shares.hash_secret(secret) in text
    assert (tmp_path / "shares.json").stat().st_mode & 0o777 == 0o600
    assert shares.find_by_secret(shares.load(tmp_path), secret) == share
    assert shares.find_by_secret(shares.load(tmp_path), secret + "x") is None


def test_a_link_ends_when_it_expires_or_is_revoked(tmp_path: Path) -> None:
    ana, _ = shares.create(tmp_path, "ana", timedelta(seconds=90), T0)
    bo, _ = shares.create(tmp_path, "bo", timedelta(days=7), T0)
    assert ana.active(T0 + timedelta(seconds=89))
    assert not ana.active(T0 + timedelta(seconds=90))
    assert [s.name for s in shares.revoke(tmp_path, "bo", T0 + timedelta(minutes=1))] == ["bo"]
    bo_now = next(s for s in shares.load(tmp_path) if s.id == bo.id)
    assert bo_now.revoked
    assert not bo_now.active(T0 + timedelta(minutes=1))
    assert shares.revoke(tmp_path, "bo", T0 + timedelta(minutes=2)) == [], "revoked twice"
    with pytest.raises(BadInput, match="no share link named 'cy'"):
        shares.revoke(tmp_path, "cy", T0)


def test_names_default_to_the_next_free_one_and_an_active_name_is_not_reused(tmp_path: Path) -> None:
    first, _ = shares.create(tmp_path, None, timedelta(hours=1), T0)
    second, _ = shares.create(tmp_path, None, timedelta(hours=1), T0)
    assert (first.name, second.name) == ("link-1", "link-2")
    with pytest.raises(BadInput, match="already active"):
        shares.create(tmp_path, "link-1", timedelta(hours=1), T0)
    shares.revoke(tmp_path, "link-1", T0)
    again, _ = shares.create(tmp_path, "link-1", timedelta(hours=1), T0)
    assert again.id != first.id, "a new link must not revive the old one's sessions"


def test_long_ended_links_are_dropped_and_a_corrupt_file_lets_no_one_in(tmp_path: Path) -> None:
    shares.create(tmp_path, "old", timedelta(hours=1), T0)
    shares.create(tmp_path, "new", timedelta(hours=1), T0 + timedelta(days=40))
    assert [s.name for s in shares.load(tmp_path)] == ["new"]
    (tmp_path / "shares.json").write_text("{not json")
    assert shares.load(tmp_path) == []
    (tmp_path / "shares.json").write_text(json.dumps({"version": 99, "shares": []}))
    assert shares.load(tmp_path) == []


def test_the_cache_reads_the_file_again_only_when_it_changed(tmp_path: Path) -> None:
    cache = shares.Cache(tmp_path)
    assert cache.current() == []
    shares.create(tmp_path, "ana", timedelta(hours=1), T0)
    first = cache.current()
    assert [s.name for s in first] == ["ana"]
    os.utime(tmp_path / "shares.json", (T0.timestamp(), T0.timestamp()))  # written long ago
    first = cache.current()
    assert cache.current() is first, "read again although unchanged"
    shares.revoke(tmp_path, "ana", T0)
    assert cache.current()[0].revoked


# -- what share says about the edge --------------------------------------------------------------


def test_share_names_what_the_edge_asks_for_first(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    config = KeeperConfig(
        port=8888,
        ngrok_path=None,
        basic_auth="ana:edge-secret-7x9q",
        oauth_provider="google",
        allow_emails=("ana@example.com",),
    )
    write_keeper_config(home, config)
    tunnel = TunnelState(status="up", public_url="https://a1b2.ngrok-free.app", keeper_pid=4242)
    record = JupyterRecord(pid=None, port=8888, root_dir=None, provider="ngrok", started_at=None)
    snap = Snapshot(None, 8888, False, 4242, tunnel, record)
    place = where(Settings(home=tmp_path), home, snap)
    assert place.base_url == "https://a1b2.ngrok-free.app/"
    said = " ".join(place.notes)
    assert "user name and password first" in said
    assert "edge-secret" not in said, "share must not print the basic-auth password"
    assert "log in with google first; only ana@example.com may pass" in said


# -- uses -----------------------------------------------------------------------------------------------


def test_each_redeem_takes_one_use_and_records_when_and_from_where(tmp_path: Path) -> None:
    share, secret = shares.create(tmp_path, "ana", timedelta(hours=1), T0, max_uses=2)
    assert (share.uses, share.max_uses) == (0, 2)
    first = shares.redeem(tmp_path, secret, T0 + timedelta(minutes=1), "203.0.113.7")
    assert first.refusal is None
    assert first.share is not None
    assert (first.share.uses, first.share.last_used_from) == (1, "203.0.113.7")
    assert shares.redeem(tmp_path, secret, T0 + timedelta(minutes=2), "198.51.100.1").refusal is None
    used_up = shares.redeem(tmp_path, secret, T0 + timedelta(minutes=3), "198.51.100.2")
    assert used_up.refusal == "was used up"
    record = shares.load(tmp_path)[0]
    assert (record.uses, record.last_used_at, record.last_used_from) == (2, "2026-12-02T09:02:00+00:00", "198.51.100.1")
    assert record.active(T0 + timedelta(minutes=3)), "a used-up link's sessions must go on"
    assert shares.redeem(tmp_path, secret + "x", T0, "a").share is None


def test_an_expired_or_revoked_link_is_refused_by_name_and_a_bad_use_count_is_bad_input(tmp_path: Path) -> None:
    _, old = shares.create(tmp_path, "old", timedelta(seconds=90), T0)
    assert shares.redeem(tmp_path, old, T0 + timedelta(seconds=90), "a").refusal == "has expired"
    _, gone = shares.create(tmp_path, "gone", timedelta(hours=1), T0)
    shares.revoke(tmp_path, "gone", T0)
    assert shares.redeem(tmp_path, gone, T0, "a").refusal == "was revoked"
    assert [s.uses for s in shares.load(tmp_path)] == [0, 0]
    for bad in (0, -1, shares.MAX_USES + 1):
        with pytest.raises(BadInput, match="--uses"):
            shares.create(tmp_path, "x", timedelta(hours=1), T0, max_uses=bad)


def test_two_logins_at_once_cannot_both_take_the_last_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first redeem is held between reading the record and writing it; a second one meanwhile
    must wait for it (the lock) instead of reading the same count and also succeeding."""
    _, secret = shares.create(tmp_path, "ana", timedelta(hours=1), T0)
    first_read, second_read, go_on = threading.Event(), threading.Event(), threading.Event()
    real_load = shares.load

    def load(home: Path) -> list[shares.Share]:
        records = real_load(home)
        if threading.current_thread().name == "first":
            first_read.set()
            go_on.wait(30)
        elif threading.current_thread().name == "second":
            second_read.set()
        return records

    monkeypatch.setattr(shares, "load", load)
    outcomes: dict[str, str | None] = {}

    def redeem() -> None:
        outcomes[threading.current_thread().name] = shares.redeem(tmp_path, secret, T0, "a").refusal

    first = threading.Thread(target=redeem, name="first")
    first.start()
    assert first_read.wait(30)
    second = threading.Thread(target=redeem, name="second")
    second.start()
    # Without the lock the second reads the record now; with it, it cannot until the first is done.
    second_read.wait(1.0)
    go_on.set()
    first.join(30)
    second.join(30)
    assert outcomes == {"first": None, "second": "was used up"}
    assert real_load(tmp_path)[0].uses == 1


def test_a_record_from_before_uses_were_counted_logs_in_once_more(tmp_path: Path) -> None:
    _share, secret = shares.create(tmp_path, "ana", timedelta(hours=1), T0)
    body = json.loads((tmp_path / "shares.json").read_text())
    for key in ("max_uses", "uses", "last_used_at", "last_used_from", "ended_cleanup"):
        del body["shares"][0][key]
    (tmp_path / "shares.json").write_text(json.dumps(body))
    assert shares.redeem(tmp_path, secret, T0, "a").refusal is None
    assert shares.redeem(tmp_path, secret, T0, "a").refusal == "was used up"
