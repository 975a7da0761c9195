"""Offline tooling, never on the serving path: training and evaluating the routing
classifier, converting labelled datasets, and the demo workload.

The sidecar never imports this package; the CLI loads it for ``train``, ``eval`` and
``demo``. Plots need the ``learn`` extra (matplotlib).
"""
