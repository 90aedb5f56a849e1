"""operate: what people ask poolwarden for (REST, dashboard, chat share one code path)."""

from poolwarden.operate.ops import HostInfo, Operations, check_json, pool_json, remediation_json

__all__ = ["HostInfo", "Operations", "check_json", "pool_json", "remediation_json"]
