"""The lab's memory model, shared by layout validation and the simulator.

It follows :mod:`poolwarden.hypervisor.base`: a VM needs ``memory_static_max +
memory_overhead`` bytes on its host, and a host's free memory is its total minus its own
``memory_overhead`` minus the needs of every VM resident on it or arriving there (the
control domain included). Layout validation uses the same figures, so a layout that loads
always fits in the simulated pool.
"""

from __future__ import annotations

GIB = 1024**3
MIB = 1024**2

#: Memory of each host's control domain (dom0), as on a default XCP-ng install.
DOM0_MEMORY = 2 * GIB
DOM0_VCPUS = 4


def gib_to_bytes(gib: float) -> int:
    """Layout sizes are GiB (floats allowed); XAPI counts bytes."""
    return round(gib * GIB)


def host_overhead(memory_total: int) -> int:
    """Xen's own use of a host's memory (frame tables, heap): about 0.4 % of RAM."""
    return memory_total // 256


def vm_overhead(static_max: int, vcpus: int) -> int:
    """Shadow/p2m memory a domain needs beyond its RAM: grows with RAM and vCPUs."""
    return static_max // 128 + vcpus * MIB


def vm_need(static_max: int, vcpus: int) -> int:
    """What a host must have free to run (or receive) this VM."""
    return static_max + vm_overhead(static_max, vcpus)


def host_capacity(memory_total: int) -> int:
    """Memory left for guests on an empty host: total − Xen overhead − dom0."""
    return memory_total - host_overhead(memory_total) - vm_need(DOM0_MEMORY, DOM0_VCPUS)
