"""Command-line front ends: 404-run (manifests) and 404-cli (the classic commands)."""
