"""Stand-ins that speak the real wire protocols over loopback HTTP.

Used by the tests, the benchmarks and the offline quick start:
`python -m runner404.sim <service> [--port N] [knobs]`, see `python -m runner404.sim --help`.
"""
