"""A hostile campaign against one real sidecar, as a stranger would run it: see ``campaign.py``."""
