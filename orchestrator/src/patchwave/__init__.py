"""Patchwave: agentless patch and configuration management for Linux fleets."""

__version__ = "0.1.0"
