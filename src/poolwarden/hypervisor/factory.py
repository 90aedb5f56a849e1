"""The driver factory: which ``PoolDriver`` talks to a pool, from its configuration.

Remediation and the pool pages open a fresh driver per use and close it; the factory
keeps, per pool, the address that last answered, so the next driver starts there (after
a master hand-over or a shutdown the configured first address may be a member, or gone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from poolwarden.errors import ConfigError
from poolwarden.hypervisor.base import PoolDriver

if TYPE_CHECKING:
    from poolwarden.config.models import PoolConfig, SshConfig


def pool_driver_for(pools: Sequence[PoolConfig], *, ssh_default: SshConfig | None = None,
                    timeout: float = 30.0) -> Callable[[str], PoolDriver]:
    """The engine's ``driver_for``: a fresh driver per remediation (the engine closes it),
    chosen by the pool's ``driver``: the XenAPI SDK from ``xapi:`` (``timeout`` is its
    socket timeout), or ``xe`` over SSH from ``xe_ssh:``, whose ``ssh`` defaults to
    ``ssh_default`` (the service passes ``scripts.ssh``), else to the built-in SSH settings.
    Blocking; the engine calls it in a thread.

    A pool's addresses (``url`` + ``fallback_urls``, ``address`` + ``fallback_addresses``)
    are tried in order, after the one that last answered — the master's URL for XenAPI,
    learned by the previous driver (a hand-over may have made the configured one a member,
    and maintenance may have shut it down)."""
    by_name = {p.name: p for p in pools}
    last_good: dict[str, str] = {}  # pool → the address (URL) that last answered

    def remember(pool: str) -> Callable[[str], None]:
        return lambda address: last_good.__setitem__(pool, address)

    def connect(pool: str) -> PoolDriver:
        cfg = by_name.get(pool)
        if cfg is not None and cfg.driver == "xe_ssh" and cfg.xe_ssh is not None:
            from poolwarden.config.models import SshConfig
            from poolwarden.hypervisor.xe_ssh import driver_from_config

            ssh = cfg.xe_ssh.ssh or ssh_default or SshConfig()
            return driver_from_config(cfg.xe_ssh, ssh, pool=pool, first=last_good.get(pool),
                                      on_connect=remember(pool))
        from poolwarden.hypervisor.xenapi import XenAPIDriver

        if cfg is None or cfg.xapi is None:
            raise ConfigError(f"pool {pool!r} has no xapi: section: poolwarden cannot act "
                              "on it", field=f"pools.{pool}.xapi")
        x = cfg.xapi
        password = x.secret.reveal() if x.secret is not None else ""
        first = last_good.get(pool)
        urls = list(dict.fromkeys([*([first] if first else []), x.url, *x.fallback_urls]))
        return XenAPIDriver(urls[0], x.user, password, timeout=timeout,
                            connect_timeout=x.connect_timeout, verify_tls=x.verify_tls,
                            fallback_urls=urls[1:],
                            on_connect=remember(pool))

    return connect


__all__ = ["pool_driver_for"]
