"""Who may change what every reviewer sees: the threshold policy of a running app.

Reviewers review; a threshold change flips other people's verdicts at once, so only an admin
applies one:

- with a login (``--auth`` pairs, or Hugging Face OAuth on a Space): the names given as admins
  (``--admin NAME``, ``DECODEMO_ADMINS``) and, on a Space, its owner (``SPACE_AUTHOR_NAME``,
  which the Space sets);
- without any login: nobody, unless threshold changes are opened explicitly
  (``--open-thresholds``, ``DECODEMO_OPEN_THRESHOLDS=1``), for one person on their own machine;
  then anyone who reaches the port may apply one.

A permitted change must also lie within the bounds the model's normal reference allows
(:func:`decodemo.metrics.calibration.threshold_bounds`); :meth:`Service.apply_threshold` checks
both and keeps who, when, from what, to what and why in the review store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from decodemo.errors import PermissionDeniedError

__all__ = ["AccessPolicy"]


@dataclass(frozen=True)
class AccessPolicy:
    """``admins``: the signed-in names that may apply thresholds; ``open_thresholds``: anyone may
    (signed in or not), for a single-person app."""

    admins: frozenset[str] = field(default_factory=frozenset)
    open_thresholds: bool = False

    @classmethod
    def from_settings(cls, admins: tuple[str, ...] | list[str] = (), *, open_thresholds: bool = False) -> "AccessPolicy":
        """The policy of ``admins`` plus ``DECODEMO_ADMINS`` (comma-separated) and a Space's owner
        (``SPACE_AUTHOR_NAME``, under Hugging Face OAuth), open when ``open_thresholds`` or
        ``DECODEMO_OPEN_THRESHOLDS`` is ``1``/``true``/``yes``."""
        from decodemo import settings

        names = set(admins) | set(settings.admins())
        owner = settings.space_owner()
        if owner and settings.hf_oauth():
            names.add(owner)
        env_open = settings.open_thresholds()
        return cls(admins=frozenset(n.strip() for n in names if n.strip()), open_thresholds=open_thresholds or env_open)

    def may_apply_thresholds(self, user: str | None, *, anonymous: bool | None = None) -> bool:
        """Whether ``user`` (None or ``anonymous``: a visitor without a login) may apply a threshold."""
        if self.open_thresholds:
            return True
        anonymous = user is None if anonymous is None else anonymous
        return not anonymous and user is not None and user in self.admins

    def check_apply_thresholds(self, user: str | None, *, anonymous: bool | None = None) -> None:
        """Raise :class:`PermissionDeniedError`, saying who may, unless ``user`` may apply thresholds."""
        if self.may_apply_thresholds(user, anonymous=anonymous):
            return
        signed_out = user is None if anonymous is None else anonymous
        who = "You are not signed in." if signed_out else f"{user} is a reviewer, not an admin."
        raise PermissionDeniedError(f"{self.who_may()} {who}")

    def who_may(self) -> str:
        """One sentence on who may apply thresholds in this app."""
        if self.open_thresholds:
            return "Anyone who reaches this app may apply thresholds (threshold changes are open)."
        if not self.admins:
            return ("Threshold changes are off: no admin is configured (start the app with a login and "
                    "--admin NAME, or DECODEMO_ADMINS).")
        return f"Only the admins ({', '.join(sorted(self.admins))}) may apply thresholds."
