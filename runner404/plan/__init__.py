"""From a manifest to a plan: the dependency graph, fingerprints and RUN/SKIP decisions."""
