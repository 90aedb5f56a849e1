"""Single-use confirmations, shared by every process on the store.

A confirmation token (a Slack Confirm/Cancel button) is signed and carries its own expiry,
so it needs no state until it is used; what it cannot carry is whether it was used. The
first use inserts its nonce into ``used_confirmation``; a second one — in this process,
on another master behind the same load balancer, or after a restart — hits the primary
key and is refused. Two simultaneous uses are serialised by the database: one insert
commits, the other fails.

Rows are pruned on the way, :data:`KEEP_AFTER_EXPIRY` after their confirmation expired
(a master whose clock lags a little must not take an expired-elsewhere token as new).
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from poolwarden.store.db import Store, now
from poolwarden.store.models import UsedConfirmation

#: seconds a used confirmation is remembered past its expiry
KEEP_AFTER_EXPIRY = 3600.0
#: the longest nonce stored (poolwarden's are 16 characters)
MAX_NONCE = 200


def first_use(store: Store, nonce: str, expires: float, who: str = "") -> bool:
    """Record the use of confirmation ``nonce``: True the first time, False if any
    process sharing ``store`` used it before. Blocking (run it off the event loop).

    A nonce poolwarden could not have issued (empty, too long) counts as used.
    """
    if not nonce or len(nonce) > MAX_NONCE:
        return False
    t = now()
    try:
        with store.session() as s:
            s.execute(delete(UsedConfirmation)
                      .where(UsedConfirmation.expires_at < t - KEEP_AFTER_EXPIRY))
            s.add(UsedConfirmation(nonce=nonce, expires_at=float(expires), used_at=t,
                                   used_by=who[:200]))
            s.flush()  # the primary key decides, here rather than at commit
    except IntegrityError:
        return False
    return True


__all__ = ["KEEP_AFTER_EXPIRY", "MAX_NONCE", "first_use"]
