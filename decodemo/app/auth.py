"""Who is using the app: logins with throttled guessing, and a per-browser identity without one.

- :class:`Logins` is the ``auth`` callable the app gives Gradio: it checks ``user:password`` pairs
  in constant time, waits :attr:`Logins.fail_delay` seconds after every failure, and locks a name
  for :attr:`Logins.lock_seconds` after :attr:`Logins.max_failures` failures within
  :attr:`Logins.window_seconds` (right password or not while locked), so a password cannot be
  guessed at network speed.
- Without a login every visitor used to be the same ``anonymous`` reviewer, so one visitor's
  undo undid another's review. The page now gives each browser a random visitor id (a
  ``decodemo_visitor`` cookie, 128 random bits, set by :data:`VISITOR_JS`), and
  :func:`identity` turns it into ``anonymous:<first 8 hex digits>``: reviews, history and undo are
  that browser's own, and still marked anonymous. The id identifies, it does not authenticate:
  a visitor who copies another's cookie acts as them, which is why threshold changes need an
  admin login (:mod:`decodemo.service.access`). API callers without the cookie stay the shared
  ``anonymous``.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections import defaultdict, deque
from typing import Any, Callable, Iterable

__all__ = ["Logins", "VISITOR_COOKIE", "VISITOR_JS", "VISITOR_PREFIX", "identity", "is_visitor"]

from decodemo.store.records import VISITOR_PREFIX  # ":" cannot occur in a login name or a Hub username

VISITOR_COOKIE = "decodemo_visitor"
_VISITOR_ID = re.compile(r"^[0-9a-f]{32}$")

#: sets the visitor cookie once per browser (crypto.getRandomValues works without https too)
VISITOR_JS = f"""
<script>
(() => {{
  if (document.cookie.split('; ').some((c) => c.startsWith('{VISITOR_COOKIE}='))) return;
  const b = new Uint8Array(16); crypto.getRandomValues(b);
  const id = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  document.cookie = '{VISITOR_COOKIE}=' + id + '; path=/; max-age=31536000; SameSite=Strict';
}})();
</script>
"""


def is_visitor(name: str | None) -> bool:
    """Whether ``name`` is an anonymous visitor's (or None: no identity at all)."""
    return name is None or name.startswith(VISITOR_PREFIX)


def _cookie(request: Any) -> str | None:
    cookies = getattr(request, "cookies", None)
    if cookies is None:
        return None
    try:
        value = cookies.get(VISITOR_COOKIE)
    except AttributeError:
        return None
    return value if isinstance(value, str) and _VISITOR_ID.match(value) else None


def identity(request: Any = None, profile: Any = None) -> str | None:
    """Who acts: the signed-in name (``auth`` login or Hugging Face OAuth); else this browser's
    visitor name ``anonymous:<8 hex>``; else None (the shared anonymous, e.g. an API client)."""
    if profile is not None and getattr(profile, "username", None):
        return str(profile.username)
    user = getattr(request, "username", None) if request is not None else None
    if user:
        return str(user)
    visitor = _cookie(request) if request is not None else None
    return f"{VISITOR_PREFIX}{visitor[:8]}" if visitor else None


class Logins:
    """A Gradio ``auth`` callable over ``pairs`` of ``(user, password)`` with throttled failures."""

    def __init__(self, pairs: Iterable[tuple[str, str]], *, max_failures: int = 5, window_seconds: float = 300.0,
                 lock_seconds: float = 300.0, fail_delay: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._pairs = {str(u): str(p) for u, p in pairs}
        if not self._pairs:
            raise ValueError("Logins needs at least one user:password pair.")
        self.max_failures, self.window_seconds = int(max_failures), float(window_seconds)
        self.lock_seconds, self.fail_delay = float(lock_seconds), float(fail_delay)
        self._clock, self._sleep = clock, sleep
        self._failures: dict[str, deque] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def users(self) -> list[str]:
        return sorted(self._pairs)

    def locked(self, username: str) -> bool:
        """Whether ``username`` is locked out now."""
        with self._lock:
            return self._locked_until.get(username, 0.0) > self._clock()

    def __call__(self, username: str, password: str) -> bool:
        username, password = str(username or ""), str(password or "")
        now = self._clock()
        with self._lock:
            if self._locked_until.get(username, 0.0) > now:
                ok = None  # locked: the password is not even looked at
            else:
                want = self._pairs.get(username, "")
                # compare against something for unknown names too, so timing does not tell names apart
                ok = hmac.compare_digest(want.encode(), password.encode()) and username in self._pairs
                if ok:
                    self._failures.pop(username, None)
                elif username in self._pairs:  # unknown names cannot succeed: nothing to keep for them
                    tries = self._failures[username]
                    tries.append(now)
                    while tries and tries[0] < now - self.window_seconds:
                        tries.popleft()
                    if len(tries) >= self.max_failures:
                        self._locked_until[username] = now + self.lock_seconds
                        tries.clear()
        if not ok:
            self._sleep(self.fail_delay)
        return bool(ok)
