"""A tiny authoritative DNS server for tests: SRV and A records from a table, UDP on
127.0.0.1 (a free port), answered from a thread with dnspython's message API.

It answers SRV queries with the records and, like a real server, the targets' A records
in the additional section; A queries from the table; any other name with NXDOMAIN. The
table can change while it runs (``set_srv``), and ``queries`` records what was asked, so a
test can wait for "the node has asked" instead of sleeping.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

TTL_S = 1


class TinyDns:
    def __init__(self) -> None:
        self._srv: dict[dns.name.Name, list[tuple[str, int]]] = {}
        self._a: dict[dns.name.Name, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.queries: list[tuple[str, str]] = []
        """(name, type) of every query answered, oldest first."""
        self.additional = True
        """Send the SRV targets' A records along (as real servers do); off, a client must
        ask for them."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)  # how often the loop looks at the stop flag
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="tiny-dns", daemon=True)

    def set_srv(self, name: str, targets: list[tuple[str, int]]) -> None:
        """SRV records of ``name``: ``(target host, port)`` each."""
        with self._lock:
            self._srv[dns.name.from_text(name)] = [
                (dns.name.from_text(host).to_text(), port) for host, port in targets
            ]

    def set_a(self, host: str, ip: str) -> None:
        with self._lock:
            self._a[dns.name.from_text(host)] = ip

    def srv_queries(self, name: str) -> int:
        wanted = dns.name.from_text(name).to_text()
        with self._lock:
            return sum(1 for n, t in self.queries if n == wanted and t == "SRV")

    def start(self) -> TinyDns:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue  # a garbled packet gets no answer, as from a real server
            with contextlib.suppress(OSError):
                self._sock.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name, rdtype = question.name, question.rdtype
        with self._lock:
            self.queries.append((name.to_text(), dns.rdatatype.to_text(rdtype)))
            srv = self._srv.get(name)
            a = self._a.get(name)
            known = srv is not None or a is not None
            if rdtype == dns.rdatatype.SRV and srv:
                response.answer.append(
                    dns.rrset.from_text_list(
                        name, TTL_S, "IN", "SRV", [f"0 0 {port} {host}" for host, port in srv]
                    )
                )
                for host, _ in srv:
                    ip = self._a.get(dns.name.from_text(host))
                    if ip and self.additional:
                        response.additional.append(dns.rrset.from_text(host, TTL_S, "IN", "A", ip))
            elif rdtype == dns.rdatatype.A and a:
                response.answer.append(dns.rrset.from_text(name, TTL_S, "IN", "A", a))
        if not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


@contextlib.contextmanager
def tiny_dns() -> Iterator[TinyDns]:
    """A started server that is always closed on the way out."""
    server = TinyDns().start()
    try:
        yield server
    finally:
        server.close()
