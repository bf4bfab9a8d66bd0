"""Run ``scraper.crawl`` with the network narrowed to 127.0.0.1: ``python -m tests.scraper_site.netjail ARGS``.

Every outgoing connection and every name lookup the crawl process makes is checked before it happens: one to
127.0.0.1 goes ahead, anything else is refused (no packet leaves) and recorded, one JSON line each, in the file
named by ``GENCOMP_NETJAIL_LOG``. A crawl test asserts that file is empty, independently of what the crawler
itself reports. The jail is installed before scraper is imported, so every socket the crawl makes goes through it.
"""

from __future__ import annotations

import errno
import json
import os
import runpy
import socket
import sys
import threading

ALLOWED_HOST = "127.0.0.1"
_lock = threading.Lock()


def _record(kind: str, target: str) -> None:
    with _lock, open(os.environ["GENCOMP_NETJAIL_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"kind": kind, "target": target}) + "\n")


def _is_inet(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def install() -> None:
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if _is_inet(self) and address[0] != ALLOWED_HOST:
            _record("connect", repr(address))
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"netjail: connection to {address!r} refused")
        return original_connect(self, address)

    def connect_ex(self, address):
        if _is_inet(self) and address[0] != ALLOWED_HOST:
            _record("connect", repr(address))
            return errno.ECONNREFUSED
        return original_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        if name != ALLOWED_HOST:
            _record("getaddrinfo", name)
            raise socket.gaierror(socket.EAI_NONAME, f"netjail: lookup of {name!r} refused")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo


def jailed(argv: list[str]) -> list[str]:
    """The argv of :func:`scraper.crawl.build_command`, run inside the jail (``[python, -m, scraper.crawl, ...]``)."""
    if argv[1:3] != ["-m", "scraper.crawl"]:
        raise ValueError(f"not a crawl command: {argv[:3]}")
    return [argv[0], "-m", "tests.scraper_site.netjail", *argv[3:]]


if __name__ == "__main__":
    install()
    sys.argv[0] = "scraper.crawl"
    runpy.run_module("scraper.crawl", run_name="__main__", alter_sys=True)
