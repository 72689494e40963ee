"""The Prometheus exporter, its parts built fresh per scrape and registered per exporter.

Only the procfs readers (``swapread``, ``pidstatus``: shared with the ``swap`` command) avoid
prometheus_client.
"""
