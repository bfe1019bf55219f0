"""Real-server test infrastructure, all on 127.0.0.1: OTLP and Sentry receivers
(``otlp_receiver``, ``sentry_receiver``), Bugsink (``bugsink``), Prometheus and Alertmanager
(``prometheus``, ``alertmanager``) and misbehaving endpoints (``failing_sockets``).

Import from the modules themselves, e.g. ``from tests.support.otlp_receiver import
OTLPReceiver``: this package deliberately imports nothing, so ``python -m
tests.support.bugsink`` runs cleanly.
"""
