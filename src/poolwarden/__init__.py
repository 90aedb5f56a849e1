"""poolwarden: keeps XenServer / XCP-ng pools healthy before hosts fail."""

__version__ = "0.1.0"
