"""A protocol-level XenAPI pool simulator (the official ``XenAPI`` SDK works against it).

Modules: :mod:`.datamodel` (the API as data), :mod:`.db` (objects and events),
:mod:`.build` (a pool from a layout), :mod:`.placement` (memory and placement rules),
:mod:`.sim` (state and test views), :mod:`.dispatch` (XML-RPC method dispatch),
``handlers_*`` (per-class semantics), :mod:`.server` (HTTP) and :mod:`.lab` (the Lab).
Kept import-free so that :mod:`poolwarden.lab.layout` can use :mod:`.memory`.
"""
