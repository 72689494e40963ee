"""The Prometheus exporter: collectors built fresh at scrape time, and their HTTP server.

Only ``backuppc-agent run`` imports the modules that need prometheus_client
(collectors, http, exporter); ``swapread`` holds the plain procfs parsers and
their reader. Nothing registers at import time: each exporter builds its own
CollectorRegistry.
"""
