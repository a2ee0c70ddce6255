"""Configuration-driven experiment pipeline for brain-inspired learning."""

__version__ = "0.1.0"
