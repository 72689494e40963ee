"""The Prometheus exporter: collectors built fresh at scrape time, and their HTTP server.

Only ``backuppc-agent run`` imports the modules that need prometheus_client
(collectors, http, exporter); ``procfs`` and ``swapread`` are plain parsers
and readers. Nothing registers at import time: each exporter builds its own
CollectorRegistry.
"""
