"""The HTTP(S) endpoint: /metrics for Prometheus, /ready for load balancers and scripts.

A threaded WSGI server like prometheus_client's own, with two differences:
paths are routed (prometheus_client serves metrics on every path), and a TLS
handshake happens in the request's thread, so a client that connects and
says nothing cannot stall the accept loop.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from backuppc_agent.listen import split_listen

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.1
ReadyCheck = Callable[[], tuple[bool, str]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_INDEX = (
    b"<html><head><title>backuppc-agent</title></head><body><h1>backuppc-agent</h1>"
    b'<p><a href="/metrics">metrics</a> <a href="/ready">ready</a></p></body></html>\n'
)


class _Handler(WSGIRequestHandler):
    """Request handler with a deadline, logging through ``logging`` at debug level."""

    timeout = REQUEST_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        logger.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request; optional TLS, handshaken in that thread."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(REQUEST_TIMEOUT_SECONDS)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except OSError as err:
            logger.debug("TLS handshake with %s failed: %s", client_address, err)
            return
        with wrapped:
            super().finish_request(wrapped, client_address)


def tls_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later); raise OSError/SSLError if files are bad."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile))
    return context


def make_app(registry: CollectorRegistry, ready: ReadyCheck) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: /metrics, /ready, an index on /, 404 elsewhere."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"use GET\n")
        if path == "/metrics":
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        if path == "/ready":
            is_ready, text = ready()
            status = "200 OK" if is_ready else "503 Service Unavailable"
            return _reply(start_response, status, text.encode() + b"\n")
        if path == "/":
            return _reply(start_response, "200 OK", _INDEX, "text/html; charset=utf-8")
        return _reply(start_response, "404 Not Found", b"not found: try /metrics or /ready\n")

    return app


def _reply(
    start_response: StartResponse, status: str, body: bytes, kind: str = "text/plain; charset=utf-8"
) -> list[bytes]:
    """Start a response with a body of known length; return the body."""
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


class MetricsServer:
    """The endpoint, serving from a daemon thread until ``close()``."""

    def __init__(
        self,
        listen: str,
        app: Callable[..., Iterable[bytes]],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        host, port = split_listen(listen)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        # WSGIServer binds in its constructor: its address family must be set on the class
        bound: type[_Server] = type(
            "_Bound", (_Server,), {"address_family": infos[0][0], "tls": tls}
        )
        self._server = make_server(host, port, app, bound, _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=REQUEST_TIMEOUT_SECONDS)
