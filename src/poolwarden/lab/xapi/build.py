"""Populate the object store from a :class:`~poolwarden.lab.layout.Layout`.

Besides the hosts and VMs of the layout, a real pool has objects clients look at: a
control domain per host, host_metrics and VM_metrics, a local SR per host and one shared
SR (with PBDs, VDIs and VBDs, so a local-storage VM is anchored for the same reason as on
a real pool: its disk's SR has no PBD on other hosts), a network, a template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poolwarden.lab.layout import HostSpec, Layout, VMSpec
from poolwarden.lab.xapi.datamodel import NULL_REF
from poolwarden.lab.xapi.db import Database
from poolwarden.lab.xapi.failure import now
from poolwarden.lab.xapi.memory import (
    DOM0_MEMORY,
    DOM0_VCPUS,
    GIB,
    MIB,
    gib_to_bytes,
    host_overhead,
    vm_overhead,
)
from poolwarden.lab.xapi.placement import level_features, refresh_free

SOFTWARE_VERSION = {
    "product_brand": "XCP-ng", "product_version": "8.3.0", "product_version_text": "8.3",
    "product_version_text_short": "8.3", "platform_name": "XCP", "platform_version": "3.4.0",
    "build_number": "release/8.3", "xapi": "24.19", "xapi_build": "24.19.2", "xen": "4.17.4",
    "linux": "4.19.0+1", "xencenter_min": "2.21", "xencenter_max": "2.21",
    "network_backend": "openvswitch", "db_schema": "5.775",
}
CPU_MODEL = {
    "cpu_count": "32", "socket_count": "2", "threads_per_core": "2", "vendor": "GenuineIntel",
    "speed": "2095.078", "modelname": "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
    "family": "6", "model": "85", "stepping": "4",
}
RUNNING_OPS = ["pool_migrate", "migrate_send", "clean_shutdown", "hard_shutdown",
               "clean_reboot", "hard_reboot", "pause", "suspend", "snapshot"]
HALTED_OPS = ["start", "start_on", "clone", "copy", "export", "destroy", "snapshot"]


def allowed_vm_operations(power_state: str) -> list[str]:
    """What XenCenter greys out or not; advisory, as in XAPI."""
    return RUNNING_OPS if power_state in ("Running", "Paused") else HALTED_OPS


def cpu_info(features: str) -> dict[str, str]:
    """A host's ``cpu_info`` map: modern per-mode feature keys and the legacy ``features``."""
    keys = ("features", "features_pv", "features_hvm", "features_pv_host", "features_hvm_host")
    return {**CPU_MODEL, **dict.fromkeys(keys, features)}


@dataclass(slots=True)
class Refs:
    """Refs of the objects the simulator addresses by layout name."""

    pool: str = ""
    hosts: dict[str, str] = field(default_factory=dict)
    vms: dict[str, str] = field(default_factory=dict)
    local_sr: dict[str, str] = field(default_factory=dict)
    shared_sr: str = ""
    network: str = ""
    pool_features: str = ""


def populate(db: Database, layout: Layout) -> Refs:
    """Create every object of the lab pool; returns the named refs."""
    refs = Refs(pool_features=level_features(h.cpu_features for h in layout.hosts))
    refs.network = db.create("network", {
        "name_label": "Pool-wide network associated with eth0", "bridge": "xenbr0",
        "MTU": 1500, "other_config": {"automatic": "true"},
    })
    refs.shared_sr = _sr(db, "NFS shared storage", "nfs", shared=True)
    for spec in layout.hosts:
        _host(db, refs, spec)
    master = refs.hosts[layout.pool.master]
    for host in refs.hosts.values():
        _pbd(db, refs.shared_sr, host)
    refs.pool = db.create("pool", {
        "name_label": layout.pool.name, "master": master, "default_SR": refs.shared_sr,
        "suspend_image_SR": refs.shared_sr, "crash_dump_SR": refs.shared_sr,
        "cpu_info": {"cpu_count": str(32 * len(layout.hosts)), "vendor": "GenuineIntel",
                     "features_pv": refs.pool_features, "features_hvm": refs.pool_features,
                     "features_pv_host": refs.pool_features,
                     "features_hvm_host": refs.pool_features},
    })
    for vm_spec in layout.vms:
        refs.vms[vm_spec.name] = _guest(db, refs, vm_spec)
    _vm(db, {"name_label": "Other install media", "is_a_template": True,
             "is_default_template": True, "power_state": "Halted"}, 2 * GIB, 2)
    refresh_free(db, *refs.hosts.values())
    return refs


def _host(db: Database, refs: Refs, spec: HostSpec) -> None:
    total = gib_to_bytes(spec.memory_gib)
    metrics = db.create("host_metrics", {
        "memory_total": total, "memory_free": total, "live": True, "last_updated": now(),
    })
    bios = ({"system-manufacturer": "Dell Inc.", "system-product-name": "PowerEdge R640"}
            if spec.bmc and spec.bmc.profile.startswith("dell") else {})
    host = db.create("host", {
        "name_label": spec.name, "name_description": "Default install", "hostname": spec.name,
        "address": "", "enabled": True, "metrics": metrics, "memory_overhead": host_overhead(total),
        "API_version_major": 2, "API_version_minor": 21, "API_version_vendor": "XenSource",
        "software_version": {**SOFTWARE_VERSION, "hostname": spec.name},
        "cpu_info": cpu_info(spec.cpu_features), "sched_policy": "credit", "edition": "xcp-ng",
        "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"],
        "supported_bootloaders": ["pygrub", "eliloader"], "bios_strings": bios,
        "allowed_operations": ["provision", "evacuate", "shutdown", "reboot", "vm_start",
                               "vm_resume", "vm_migrate"],
    })
    refs.hosts[spec.name] = host
    dom0 = _vm(db, {
        "name_label": f"Control domain on host: {spec.name}", "is_control_domain": True,
        "power_state": "Running", "resident_on": host, "affinity": host, "domid": 0,
        "last_boot_CPU_flags": {"vendor": "GenuineIntel", "features": spec.cpu_features},
    }, DOM0_MEMORY, DOM0_VCPUS)
    sr = refs.local_sr[spec.name] = _sr(db, "Local storage", "lvm", shared=False)
    db.set("SR", sr, name_description=f"Local storage on {spec.name}")
    _pbd(db, sr, host)
    db.set("host", host, resident_VMs=[dom0], control_domain=dom0)


def _guest(db: Database, refs: Refs, spec: VMSpec) -> str:
    host = refs.hosts[spec.host] if spec.host else NULL_REF
    running = spec.occupies_host
    values: dict[str, Any] = {
        "name_label": spec.name, "power_state": spec.power_state, "affinity": host,
        "resident_on": host if running else NULL_REF, "domid": -1,
        "domain_type": "hvm", "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "cd"},
        "platform": {"viridian": "true", "acpi": "1", "apic": "true", "pae": "true"},
    }
    if running:
        values["last_boot_CPU_flags"] = {
            "vendor": "GenuineIntel", "features": spec.cpu_features or refs.pool_features,
        }
        values["domid"] = len(db.get("host", host, "resident_VMs"))
    vm = _vm(db, values, gib_to_bytes(spec.memory_gib), spec.vcpus)
    sr = refs.local_sr[spec.host] if spec.local_storage and spec.host else refs.shared_sr
    _disk(db, vm, sr, attached=running)
    if running:
        db.set("host", host, resident_VMs=[*db.get("host", host, "resident_VMs"), vm])
    return vm


def _vm(db: Database, values: dict[str, Any], memory: int, vcpus: int) -> str:
    state = values.get("power_state", "Halted")
    metrics = db.create("VM_metrics", {
        "memory_actual": memory if state in ("Running", "Paused") else 0,
        "VCPUs_number": vcpus, "start_time": now(),
    })
    return db.create("VM", {
        "memory_static_max": memory, "memory_dynamic_max": memory, "memory_target": memory,
        "memory_dynamic_min": memory, "memory_static_min": min(memory, 512 * MIB),
        "memory_overhead": vm_overhead(memory, vcpus), "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus, "metrics": metrics, "user_version": 1,
        "allowed_operations": [] if values.get("is_a_template") or values.get(
            "is_control_domain") else allowed_vm_operations(state),
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        **values,
    })


def _sr(db: Database, name: str, sr_type: str, *, shared: bool) -> str:
    return db.create("SR", {
        "name_label": name, "type": sr_type, "shared": shared, "content_type": "user",
        "physical_size": 2048 * GIB, "physical_utilisation": 0, "virtual_allocation": 0,
        "allowed_operations": ["vdi_create", "vdi_destroy", "scan", "plug", "unplug"],
    })


def _pbd(db: Database, sr: str, host: str) -> None:
    pbd = db.create("PBD", {"host": host, "SR": sr, "currently_attached": True})
    db.set("SR", sr, PBDs=[*db.get("SR", sr, "PBDs"), pbd])
    db.set("host", host, PBDs=[*db.get("host", host, "PBDs"), pbd])


def _disk(db: Database, vm: str, sr: str, *, attached: bool) -> None:
    size = 20 * GIB
    vdi = db.create("VDI", {
        "name_label": f"{db.get('VM', vm, 'name_label')} 0", "SR": sr, "virtual_size": size,
        "physical_utilisation": size // 4, "type": "user", "managed": True,
    })
    vbd = db.create("VBD", {
        "VM": vm, "VDI": vdi, "device": "xvda", "userdevice": "0", "bootable": True,
        "mode": "RW", "type": "Disk", "currently_attached": attached,
    })
    db.set("VDI", vdi, VBDs=[vbd], location=db.get("VDI", vdi, "uuid"))
    db.set("VM", vm, VBDs=[vbd])
    db.set("SR", sr, VDIs=[*db.get("SR", sr, "VDIs"), vdi],
           virtual_allocation=int(db.get("SR", sr, "virtual_allocation")) + size,
           physical_utilisation=int(db.get("SR", sr, "physical_utilisation")) + size // 4)
