"""The lab: a simulated XenServer/XCP-ng pool that real clients (the XenAPI SDK) talk to.

``Lab(load_layout("layout.yaml")).start()`` serves every host of the layout on its own
port; see :mod:`poolwarden.lab.xapi` for the simulator and :mod:`poolwarden.lab.layout`
for the layout file.
"""

from poolwarden.lab.layout import Layout, load_layout
from poolwarden.lab.xapi.lab import Lab
from poolwarden.lab.xapi.sim import HostFlags, MigrationRecord, Simulator

__all__ = ["HostFlags", "Lab", "Layout", "MigrationRecord", "Simulator", "load_layout"]
