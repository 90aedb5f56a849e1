"""Sessions and the pool master: login, logout, expiry, master hand-over."""

from __future__ import annotations

import time

from poolwarden.lab.xapi.failure import XapiFailure, now
from poolwarden.lab.xapi.placement import host_live
from poolwarden.lab.xapi.registry import Call, handler
from poolwarden.lab.xapi.sim import Simulator


def check_session(sim: Simulator, ref: str) -> None:
    """SESSION_INVALID [ref] for unknown, logged-out or idle-expired sessions."""
    with sim.db.lock:
        last = sim.sessions.get(ref)
        t = time.monotonic()
        if last is None or t - last > sim.session_timeout_s:
            if last is not None:
                drop_session(sim, ref)
            raise XapiFailure("SESSION_INVALID", ref)
        sim.sessions[ref] = t


def drop_session(sim: Simulator, ref: str) -> None:
    with sim.db.lock:
        sim.sessions.pop(ref, None)
        if sim.db.exists("session", ref):
            sim.db.destroy("session", ref, emit=False)


def _login(call: Call, uname: str, pwd: str, originator: str, *, local: bool) -> str:
    sim, db = call.sim, call.sim.db
    host = sim.host_ref(call.host)
    master = db.get("pool", sim.refs.pool, "master")
    if host != master and not local:
        # why: only the master accepts logins; the address tells clients where to go.
        raise XapiFailure("HOST_IS_SLAVE", db.get("host", master, "address"))
    if (uname, pwd) != sim.credentials:
        raise XapiFailure("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    ref = db.create("session", {
        "this_host": host, "last_active": now(), "pool": False, "originator": originator,
        "auth_user_name": uname, "is_local_superuser": True, "validation_time": now(),
    }, emit=False)
    sim.sessions[ref] = time.monotonic()
    return ref


@handler("session", "login_with_password")
def login_with_password(
    call: Call, uname: str, pwd: str, version: str = "", originator: str = "",
) -> str:
    return _login(call, uname, pwd, originator, local=False)


@handler("session", "slave_local_login_with_password")
def slave_local_login_with_password(call: Call, uname: str, pwd: str) -> str:
    """An emergency login any host accepts (the SDK routes ``slave_local_*`` to it)."""
    return _login(call, uname, pwd, "", local=True)


@handler("session", "logout")
def logout(call: Call) -> None:
    if call.session:
        drop_session(call.sim, call.session)


@handler("session", "local_logout")
def local_logout(call: Call) -> None:
    logout(call)


@handler("pool", "designate_new_master")
def designate_new_master(call: Call, host: str) -> None:
    sim, db = call.sim, call.sim.db
    if db.get("pool", sim.refs.pool, "ha_enabled"):
        raise XapiFailure("HA_IS_ENABLED")
    db.overlay("host", host)
    if not host_live(db, host):
        raise XapiFailure("HOST_OFFLINE", host)
    if db.get("pool", sim.refs.pool, "master") == host:
        return  # already the master: xapi does nothing
    db.set("pool", sim.refs.pool, master=host)
    # why: xapi restarts on the old and the new master; every session dies with it, so
    # clients log in again and learn (HOST_IS_SLAVE) where the master went.
    for ref in list(sim.sessions):
        drop_session(sim, ref)
