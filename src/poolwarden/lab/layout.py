"""The lab's layout file: which hosts, which VMs where, credentials, migration speed.

Loaded with :mod:`poolwarden.config.yamlsource`, so a bad file fails with
``file:line: field: problem``. Cross-field rules (the master and every VM's host must be
declared hosts, names are unique, VMs fit in their host's memory) are checked in a model
validator that raises :class:`LayoutProblem`, which carries the path of the offending field
so that :func:`load_layout` can point at its line too.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from poolwarden.config.yamlsource import load_model, parse_yaml
from poolwarden.errors import ConfigError
from poolwarden.lab.xapi.memory import (
    DOM0_MEMORY,
    GIB,
    gib_to_bytes,
    host_capacity,
    host_overhead,
    vm_need,
)

#: A Skylake-SP host's HVM feature words (``xe host-cpu-info``): realistic, 18 words.
DEFAULT_CPU_FEATURES = (
    "1fcbfbff-f7fa3223-2d93fbff-00000423-00000001-029c6fbf-00000000-00000000-"
    "00001000-bc000400-00000000-00000000-00000000-00000000-00000000-00000000-"
    "00000000-00000000"
)
_FEATURES = re.compile(r"^[0-9a-fA-F]{1,8}(-[0-9a-fA-F]{1,8})*$")
PowerState = Literal["Running", "Paused", "Halted", "Suspended"]
Loc = tuple[str | int, ...]


class LayoutProblem(ValueError):
    """A cross-field error, with the path of the field it concerns."""

    def __init__(self, loc: Loc, message: str) -> None:
        self.loc, self.message = loc, message
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")


def _check_features(value: str | None) -> str | None:
    if value is not None and not _FEATURES.match(value):
        raise ValueError("CPU features must be hex words joined by '-' (e.g. 0000e3bd-bfebfbff)")
    return value.lower() if value is not None else None


class _Model(BaseModel):
    # why: a typo in a layout key must fail loudly rather than be ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BmcSpec(BaseModel):
    """A host's BMC agent; kept for the SNMP part of the lab (extra keys allowed for it)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    profile: str
    recording: str | None = None


class PoolSpec(_Model):
    name: str = "lab-pool"
    master: str


class HostSpec(_Model):
    name: str = Field(min_length=1)
    memory_gib: float = Field(gt=0)
    cpu_features: str = DEFAULT_CPU_FEATURES
    bmc: BmcSpec | None = None

    check_features = field_validator("cpu_features")(_check_features)


class VMSpec(_Model):
    name: str = Field(min_length=1)
    memory_gib: float = Field(gt=0)
    #: Where the VM runs (Running/Paused) or prefers to start (its affinity) otherwise.
    host: str | None = None
    power_state: PowerState = "Running"
    vcpus: int = Field(default=2, ge=1)
    #: Disk on the host's local SR: the VM cannot leave its host (VM_REQUIRES_SR).
    local_storage: bool = False
    #: CPU features the VM booted with; default: the pool's levelled features.
    cpu_features: str | None = None

    check_features = field_validator("cpu_features")(_check_features)

    @property
    def occupies_host(self) -> bool:
        """Running and paused VMs hold memory on their host."""
        return self.power_state in ("Running", "Paused")


class Credentials(_Model):
    user: str = "root"
    password: str = "lab"  # noqa: S105  (the lab's documented demo password)


class MigrationSpec(_Model):
    #: Simulated live-migration speed: a VM of M GiB takes M / speed seconds.
    speed_gib_per_s: float = Field(default=32.0, gt=0)


class Layout(_Model):
    pool: PoolSpec
    hosts: list[HostSpec] = Field(min_length=1)
    vms: list[VMSpec] = Field(default_factory=list)
    credentials: Credentials = Field(default_factory=Credentials)
    migration: MigrationSpec = Field(default_factory=MigrationSpec)

    @model_validator(mode="after")
    def _cross_check(self) -> Layout:
        hosts = {h.name: i for i, h in enumerate(self.hosts)}
        _unique([h.name for h in self.hosts], "hosts")
        _unique([v.name for v in self.vms], "vms")
        if self.pool.master not in hosts:
            raise LayoutProblem(("pool", "master"), f"unknown host {self.pool.master!r}")
        used: dict[str, int] = dict.fromkeys(hosts, 0)
        for i, vm in enumerate(self.vms):
            if vm.host is not None and vm.host not in hosts:
                raise LayoutProblem(("vms", i, "host"), f"unknown host {vm.host!r}")
            if vm.host is None and vm.occupies_host:
                raise LayoutProblem(("vms", i, "host"), f"a {vm.power_state} VM needs a host")
            if vm.local_storage and vm.host is None:
                raise LayoutProblem(("vms", i, "host"), "a local-storage VM needs a host")
            if vm.host is not None and vm.occupies_host:
                used[vm.host] += vm_need(gib_to_bytes(vm.memory_gib), vm.vcpus)
        for name, need in used.items():
            host = self.hosts[hosts[name]]
            total = gib_to_bytes(host.memory_gib)
            if need > host_capacity(total):
                raise LayoutProblem(
                    ("hosts", hosts[name], "memory_gib"),
                    f"VMs on {name} need {need / GIB:.2f} GiB (with overheads) but only "
                    f"{host_capacity(total) / GIB:.2f} GiB is free for guests "
                    f"({host.memory_gib:g} GiB − {DOM0_MEMORY // GIB} GiB dom0 − "
                    f"{host_overhead(total) / GIB:.2f} GiB Xen overhead)",
                )
        return self

    def host(self, name: str) -> HostSpec:
        """The declared host called ``name``."""
        return next(h for h in self.hosts if h.name == name)


def _unique(names: list[str], where: str) -> None:
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        index = len(names) - 1 - names[::-1].index(dup[0])
        raise LayoutProblem((where, index, "name"), f"duplicate name {dup[0]!r}")


def _line(loc: Loc, lines: dict[tuple[str | int, ...], int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _problem(exc: BaseException | None) -> LayoutProblem | None:
    if not isinstance(exc, ValidationError):
        return None
    ctx: Any = exc.errors()[0].get("ctx") or {}
    err = ctx.get("error")
    return err if isinstance(err, LayoutProblem) else None


def load_layout(path: str | Path) -> Layout:
    """Read a layout YAML file; errors are :class:`ConfigError` naming file:line:field."""
    try:
        return load_model(Layout, path)
    except ConfigError as exc:
        problem = _problem(exc.__cause__)
        if problem is None:
            raise
        # why: pydantic places model-validator errors at the top level; re-locate them.
        _, lines = parse_yaml(Path(path).read_text(encoding="utf-8"), str(path))
        raise ConfigError(
            problem.message, file=str(path), line=_line(problem.loc, lines),
            field=".".join(str(p) for p in problem.loc),
        ) from exc.__cause__
