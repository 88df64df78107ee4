"""runner404: declarative evaluations for Bittensor subnet 17 ("404")."""

__version__ = "0.1.0"
