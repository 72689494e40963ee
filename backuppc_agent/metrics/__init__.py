"""The Prometheus exporter, its parts built fresh per scrape and registered per exporter.

Only ``swapread`` (procfs, shared with the ``swap`` command) avoids prometheus_client.
"""
