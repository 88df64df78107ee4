"""Pods: where the services run (Targon, a local process, or an existing endpoint)."""
