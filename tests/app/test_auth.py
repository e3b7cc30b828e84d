"""Logins with throttled guessing, the login pairs from the environment, the visitor identity."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from decodemo import settings
from decodemo.app.auth import Logins, identity, is_visitor


def test_failures_lock_a_name_for_a_while_and_the_right_password_then_fails_too():
    now, slept = [0.0], []
    logins = Logins([("ana", "pw"), ("bo", "x")], max_failures=3, window_seconds=60, lock_seconds=120,
                    fail_delay=0.5, clock=lambda: now[0], sleep=slept.append)
    assert logins("ana", "pw") and not slept
    assert [logins("ana", "no") for _ in range(2)] == [False, False] and slept == [0.5, 0.5]
    now[0] = 61.0  # failures older than the window do not count
    assert not logins("ana", "no") and not logins.locked("ana")
    assert not logins("ana", "no") and not logins("ana", "no") and logins.locked("ana")
    assert not logins("ana", "pw")  # locked: the right password is refused
    assert logins("bo", "x")  # other names are not affected
    now[0] += 121.0
    assert logins("ana", "pw") and not logins.locked("ana")
    for i in range(50):  # unknown names are refused and nothing is kept for them
        assert not logins(f"nobody{i}", "pw")
    assert set(logins._failures) <= {"ana"}
    with pytest.raises(ValueError):
        Logins([])


def test_auth_pairs_keep_commas_in_passwords_and_read_a_file(monkeypatch, tmp_path):
    assert settings.parse_auth("ana:a,b,bo:c") == [("ana", "a,b"), ("bo", "c")]
    assert settings.parse_auth("ana:p:q, bo :x") == [("ana", "p:q"), ("bo", "x")]
    assert settings.parse_auth("") == []
    with pytest.raises(ValueError):
        settings.parse_auth("no-colon")
    f = tmp_path / "logins"
    f.write_text("# reviewers\nana:comma, and: colon\n\nbo:x\n")
    monkeypatch.setenv("DECODEMO_AUTH", "cy:1,2")
    monkeypatch.setenv("DECODEMO_AUTH_FILE", str(f))
    assert settings.auth_pairs() == [("cy", "1,2"), ("ana", "comma, and: colon"), ("bo", "x")]


def test_identity_prefers_a_login_and_only_takes_well_formed_visitor_ids():
    cookie = {"decodemo_visitor": "0123456789abcdef" * 2}
    assert identity(SimpleNamespace(username=None, cookies=cookie)) == "anonymous:01234567"
    assert identity(SimpleNamespace(username="ana", cookies=cookie)) == "ana"
    assert identity(SimpleNamespace(username=None, cookies=cookie), SimpleNamespace(username="hf-user")) == "hf-user"
    for bad in ("", "xyz", "0" * 31, "0" * 33, "G" * 32, "anonymous"):
        assert identity(SimpleNamespace(username=None, cookies={"decodemo_visitor": bad})) is None
    assert identity(None) is None and identity(SimpleNamespace()) is None
    assert is_visitor(None) and is_visitor("anonymous:01234567") and not is_visitor("ana")
