"""What to run: the job catalog, built from poolwarden.yaml (and what discovery found).

One description serves three callers: the embedded service runs jobs itself; a master
only *dispatches* them (a work item naming the job) to the zone that owns the target; a
satellite *executes* work items. A job is named ``snmp/<host>`` (one GETBULK poll of the
host's BMC, one result per sensor) or ``plugin/<check>/<host>``; its ``params`` carry the
non-secret target data that travels on the bus. Secrets (SNMP communities and keys) are
never in a job: :class:`JobRunner` reads them from the executing process's own config.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from poolwarden.collect.plugin import find_plugin, run_plugin
from poolwarden.collect.sensors import poll
from poolwarden.collect.snmp import SnmpTarget
from poolwarden.config.models import BmcConfig, CheckConfig, Config
from poolwarden.errors import ConfigError, NotFound
from poolwarden.messages import CheckResult

#: the zone of pools that name none: the masters' own workers run their checks
MASTER_ZONE = "master"


def partition_of(key: str, partitions: int) -> int:
    """The partition of a pool (or a pool-less key): stable across processes and runs."""
    return zlib.crc32(key.encode("utf-8")) % partitions


@dataclass(frozen=True, slots=True)
class DiscoveredHost:
    """A pool member found through the hypervisor that the configuration does not list."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class JobSpec:
    id: str
    kind: Literal["snmp", "plugin"]
    host: str
    pool: str
    zone: str
    partition: int
    interval: float
    timeout: float
    #: checks of this job share this prefix (for the retry interval while SOFT)
    check_prefix: str
    params: Mapping[str, str] = field(default_factory=dict)
    #: the check's own attempts/intervals (plugins); None: the monitoring defaults
    max_attempts: int | None = None
    retry_interval: float | None = None


def snmp_target(bmc: BmcConfig) -> SnmpTarget:
    """The collector's view of a configured BMC; secrets are read here, once."""
    s = bmc.snmp
    if s.version == "3":
        return SnmpTarget(
            address=bmc.address, port=bmc.port, version="v3", user=s.user,
            auth_protocol=s.auth.protocol if s.auth else "SHA",  # type: ignore[arg-type]
            auth_key=SecretStr(s.auth.secret.reveal()) if s.auth else None,
            priv_protocol=s.priv.protocol if s.priv else "AES",  # type: ignore[arg-type]
            priv_key=SecretStr(s.priv.secret.reveal()) if s.priv else None,
            timeout=s.timeout, retries=s.retries,
        )
    return SnmpTarget(address=bmc.address, port=bmc.port, version="v2c",
                      community=SecretStr(s.community), timeout=s.timeout, retries=s.retries)


def build_jobs(config: Config, *, partitions: int = 1,
               discovered: Mapping[str, Sequence[DiscoveredHost]] | None = None,
               ) -> dict[str, JobSpec]:
    """Every job the configuration (plus discovered pool members) asks for, by id."""
    m = config.monitoring
    jobs: dict[str, JobSpec] = {}
    for pool in config.pools:
        zone = pool.zone or MASTER_ZONE
        part = partition_of(pool.name, partitions)
        members = [(h.name, h.address or h.name, h.bmc) for h in pool.hosts]
        known = {h.name for h in pool.hosts}
        members += [(d.name, d.address, None) for d in (discovered or {}).get(pool.name, ())
                    if d.name not in known]
        for name, address, bmc in members:
            if bmc is not None:
                interval = bmc.interval or m.snmp_interval
                target_timeout = bmc.snmp.timeout * (bmc.snmp.retries + 1)
                jobs[f"snmp/{name}"] = JobSpec(
                    f"snmp/{name}", "snmp", name, pool.name, zone, part, interval,
                    target_timeout * 8 + 5, "snmp/",
                    {"bmc_address": bmc.address, "bmc_port": str(bmc.port),
                     "profile": bmc.profile})
            for check in config.checks:
                if check.matches(name):
                    jid = f"plugin/{check.name}/{name}"
                    jobs[jid] = JobSpec(
                        jid, "plugin", name, pool.name, zone, part, check.interval,
                        check.timeout + 5, f"plugin/{check.name}",
                        {"check": check.name, "address": address,
                         "bmc_address": bmc.address if bmc else ""},
                        check.max_attempts, check.retry_interval)
    return jobs


class JobRunner:
    """Executes jobs with this process's configuration (where the secrets are)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._bmcs = {h.name: h.bmc for p in config.pools for h in p.hosts if h.bmc}
        self._checks: dict[str, CheckConfig] = {c.name: c for c in config.checks}
        self._targets: dict[str, SnmpTarget] = {}

    def _target(self, host: str) -> tuple[SnmpTarget, str]:
        bmc = self._bmcs.get(host)
        if bmc is None:
            raise NotFound(f"no BMC configured for {host} in this process's configuration")
        target = self._targets.get(host)
        if target is None:
            try:
                target = self._targets[host] = snmp_target(bmc)
            except ValueError as exc:
                raise ConfigError(str(exc), field=f"hosts.{host}.bmc.snmp") from exc
        return target, bmc.profile

    def check(self) -> None:
        """Build every SNMP target now: bad settings are a ConfigError at start-up."""
        for host in self._bmcs:
            self._target(host)

    def _check(self, spec: JobSpec) -> CheckConfig:
        check = self._checks.get(spec.params.get("check", ""))
        if check is None:
            raise NotFound(f"no check {spec.params.get('check')!r} in this process's "
                           "configuration")
        return check

    def argv(self, spec: JobSpec) -> list[str]:
        argv = self._check(spec).argv({
            "host.name": spec.host, "host.address": spec.params.get("address", spec.host),
            "pool.name": spec.pool, "bmc.address": spec.params.get("bmc_address", ""),
        })
        if "/" not in argv[0]:
            argv[0] = find_plugin(argv[0]) or argv[0]  # the runner reports a missing one
        return argv

    async def run(self, spec: JobSpec) -> list[CheckResult]:
        """Run one job; check trouble is a result (UNKNOWN), never an exception. A job
        this configuration cannot run (no such BMC or check) is ``NotFound``."""
        if spec.kind == "snmp":
            target, profile = self._target(spec.host)
            return await poll(target, profile, host=spec.host)
        res = await run_plugin(self.argv(spec), timeout=self._check(spec).timeout)
        return [res.to_check_result(spec.host, spec.check_prefix, time.time())]


__all__ = ["MASTER_ZONE", "DiscoveredHost", "JobRunner", "JobSpec", "build_jobs",
           "partition_of", "snmp_target"]
