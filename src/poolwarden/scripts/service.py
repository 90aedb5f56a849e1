"""Running a vetted script on a *configured* host: ``scripts:`` of poolwarden.yaml.

One path for every door (the API, ``poolwarden xescript --config``, chat, and rules with
``action: script``), so a script is the same operation with the same checks and the same
audit trail wherever it comes from:

- the host must be in ``pools[].hosts[]``: it is reached at its ``address`` (else its
  name) and ``ssh_port`` (else ``scripts.ssh.port``); the CLI may override both;
- the directory, the login and the limits come from ``scripts:``;
- every run, and every refusal (no ``scripts:``, unknown host, bad name or argument,
  untrusted host key), leaves a row through :func:`poolwarden.scripts.audit.run_audited`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from poolwarden.errors import ConfigError, NotFound, OperationRefused, UsageError
from poolwarden.scripts.audit import count_runs, record, run_audited
from poolwarden.scripts.catalog import ScriptCatalog
from poolwarden.store.db import Store, now
from poolwarden.store.models import SCRIPT_REFUSED

if TYPE_CHECKING:
    from poolwarden.config.models import Config, HostConfig, ScriptsConfig
    from poolwarden.operate.ops import Operations
    from poolwarden.scripts.runner import ScriptResult

#: the audit's ``who`` of runs asked for by a rule: ``rule:<rule name>``
RULE_PREFIX = "rule:"


def open_catalog(scripts: ScriptsConfig) -> ScriptCatalog:
    """The catalog of ``scripts.directory``; a missing directory is a configuration error."""
    try:
        return ScriptCatalog(scripts.directory)
    except UsageError as exc:
        raise ConfigError(str(exc), field="scripts.directory") from exc


class ConfiguredScripts:
    """Scripts as a :class:`Config` says to run them (see the module docstring).

    ``catalog`` and ``host_config`` let :class:`~poolwarden.operate.ops.Operations` share
    its own (cached catalog, host index); by default both come from ``config``.
    """

    def __init__(self, config: Config, store: Store, *,
                 catalog: Callable[[], ScriptCatalog] | None = None,
                 host_config: Callable[[str], HostConfig] | None = None) -> None:
        self.config, self.store = config, store
        self._hosts = {h.name: (p.name, h) for p in config.pools for h in p.hosts}
        self._catalog_of = catalog or self._own_catalog
        self._host_of = host_config or self._own_host
        self._catalog: ScriptCatalog | None = None

    @classmethod
    def of(cls, ops: Operations) -> ConfiguredScripts:
        return cls(ops.config, ops.store, catalog=ops.script_catalog,
                   host_config=lambda name: ops.host_info(name).config)

    # -- what the configuration says --------------------------------------------------------
    def settings(self) -> ScriptsConfig:
        if self.config.scripts is None:
            raise OperationRefused("no scripts: section in the configuration: running "
                                   "scripts is switched off")
        return self.config.scripts

    def _own_catalog(self) -> ScriptCatalog:
        if self._catalog is None:  # why no lock: two threads building one is harmless
            self._catalog = open_catalog(self.settings())
        return self._catalog

    def _own_host(self, name: str) -> HostConfig:
        found = self._hosts.get(name)
        if found is None:
            raise NotFound(f"no host {name!r} in the configuration")
        return found[1]

    def address(self, host: str) -> str:
        """Where ``host`` is reached: its configured address, else its name."""
        return self._host_of(host).address or host

    def target(self, host: str, *, address: str | None = None,
               port: int | None = None) -> tuple[str, int]:
        """(address, port) of ``host``; ``address``/``port`` override the configuration,
        and with an ``address`` the host need not be configured (the CLI's flags)."""
        default_port = self.settings().ssh.port
        try:
            cfg: HostConfig | None = self._host_of(host)
        except NotFound:
            if address is None:
                raise
            cfg = None
        where = address or (cfg.address if cfg is not None else None) or host
        return where, port or (cfg.ssh_port if cfg is not None else None) or default_port

    def check(self, script: str, args: Sequence[str]) -> tuple[str, ...]:
        """Validate a request without running it (dry runs): the arguments, or UsageError."""
        return self._catalog_of().prepare(script, list(args))[1]

    def rule_runs(self, pool: str, since: float) -> int:
        """Scripts rules ran (not refusals) on ``pool``'s hosts since ``since``."""
        hosts = [h for h, (p, _) in self._hosts.items() if p == pool]
        return count_runs(self.store, hosts=hosts, since=since, who_prefix=RULE_PREFIX)

    # -- running ----------------------------------------------------------------------------
    async def run(self, host: str, script: str, args: Sequence[str], who: str, *,
                  address: str | None = None, port: int | None = None,
                  ) -> tuple[ScriptResult, int]:
        """Run ``script`` on ``host`` as ``who``: the result and its audit row id.

        Raises, after journalling the refusal: ``OperationRefused`` (no ``scripts:``),
        ``NotFound`` (host not configured), ``ConfigError`` (no scripts directory), and
        whatever :func:`run_audited` raises.
        """
        started = now()
        try:
            scripts = self.settings()
            where, ssh_port = self.target(host, address=address, port=port)
            catalog = self._catalog_of()
        except (OperationRefused, NotFound, ConfigError) as exc:
            await asyncio.to_thread(record, self.store, who=who, host=host, script=script,
                                    args=list(args), started_at=started,
                                    status=SCRIPT_REFUSED, error=str(exc))
            raise
        ssh = scripts.ssh
        return await run_audited(
            self.store, catalog, who=who, host=host, address=where, port=ssh_port,
            script=script, args=list(args), user=ssh.user, key_file=ssh.key_file,
            known_hosts=ssh.known_hosts, timeout=scripts.timeout,
            max_output=scripts.max_output, connect_timeout=ssh.connect_timeout)

    def run_blocking(self, host: str, script: str, args: Sequence[str], who: str,
                     ) -> tuple[ScriptResult, int]:
        """:meth:`run` from a worker thread (runbooks), in an event loop of its own.

        Why not the service's loop: the SSH session then lives and dies with this thread,
        bounded by the script's timeout; handing it to the service's loop and blocking on
        the future would hang forever if that loop stopped first (shutdown).
        """
        return asyncio.run(self.run(host, script, args, who))


def configured_scripts(config: Config, store: Store) -> ConfiguredScripts | None:
    """What the remediation engine runs rule scripts with; None without ``scripts:``."""
    return ConfiguredScripts(config, store) if config.scripts is not None else None


async def run_configured(ops: Operations, host: str, script: str, args: list[str],
                         who: str) -> tuple[ScriptResult, int]:
    """:meth:`ConfiguredScripts.run` with the catalog and host index of ``ops``."""
    return await ConfiguredScripts.of(ops).run(host, script, args, who)


__all__ = ["RULE_PREFIX", "ConfiguredScripts", "configured_scripts", "open_catalog",
           "run_configured"]
