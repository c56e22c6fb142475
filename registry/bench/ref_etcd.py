"""Reference: etcd doing the same registrations, a 3-member cluster on loopback.

Debian's ``etcd-server`` package (``/usr/bin/etcd``; ``apt-get install etcd-server``,
which ``.ci/run`` does in CI). Three members on free loopback ports, data in a fresh
temporary directory under the bench's work directory (always removed), a unique
``--initial-cluster-token``, no auth, the default fsync'ing WAL. The client speaks to
etcd's v3 JSON gateway (grpc-gateway) over HTTP/1.1 keep-alive connections — one per
lane, spread over the three members as ``clientv3`` spreads its requests — with the same
asyncio load generator as our bench:

- one lease is granted; a registration is a txn ``compare create_revision(key) == 0 →
  put(key, kind, lease)`` (create-if-absent with a lease, what an etcd-based registry
  does);
- one by one: one txn per name at ``concurrency`` in flight;
- batched: ``etcd_txn_ops`` names per txn (etcd's default ``--max-txn-ops`` is 128; the
  batch is all-or-nothing like ``register_many``), with as many txns in flight as keep
  the same number of names in flight as our batched run.

At the end a count-only range checks that every key is there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from registry.bench.load import Progress, run_lanes
from registry.bench.params import Params
from registry.bench.results import SectionResult
from registry.testing.local_cluster import free_ports

ETCD = Path("/usr/bin/etcd")
MEMBERS = 3
START_TIMEOUT_S = 60.0
LEASE_TTL_S = 3600
ONE_PREFIX = "bench/one/"
BATCH_PREFIX = "bench/batch/"
VALUE = b"echo"
INSTALL_HINT = "install Debian's etcd-server package (apt-get install etcd-server)"


def missing() -> str:
    """Why the reference cannot run here (empty: it can)."""
    return "" if ETCD.is_file() else f"{ETCD} not found: {INSTALL_HINT}"


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


class HttpError(RuntimeError):
    pass


class Http:
    """A minimal HTTP/1.1 keep-alive client for JSON POSTs to one etcd member."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self._writer.write(head.encode("ascii") + data)
        status_line, headers = await self._head()
        if headers.get("transfer-encoding") == "chunked":
            payload = await self._chunked()
        else:
            payload = await self._reader.readexactly(int(headers.get("content-length", "0")))
        code = int(status_line.split()[1])
        if code != 200:
            raise HttpError(f"POST {path}: {status_line} {payload[:300]!r}")
        reply = json.loads(payload)
        assert isinstance(reply, dict)
        return reply

    async def _head(self) -> tuple[str, dict[str, str]]:
        assert self._reader is not None
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return lines[0], headers

    async def _chunked(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = self._reader = None


class EtcdCluster:
    """Three ``etcd`` processes on loopback; ``close()`` kills them and removes the data."""

    def __init__(self, log_dir: Path, fsync: bool = True) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        # Under the bench's work directory (so its processes are findable by path), but
        # removed by close() even when the work directory is kept.
        self.data = Path(tempfile.mkdtemp(prefix="etcd-data-", dir=log_dir))
        self.log_dir = log_dir
        ports = free_ports(2 * MEMBERS)
        self.client_ports = ports[:MEMBERS]
        peer_ports = ports[MEMBERS:]
        self.names = [f"m{i + 1}" for i in range(MEMBERS)]
        self.peer_urls = [f"http://127.0.0.1:{p}" for p in peer_ports]
        self.token = f"registry-bench-{uuid.uuid4().hex[:12]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.fsync = fsync

    def start(self) -> None:
        initial = ",".join(f"{n}={u}" for n, u in zip(self.names, self.peer_urls, strict=True))
        for name, client_port, peer_url in zip(
            self.names, self.client_ports, self.peer_urls, strict=True
        ):
            client_url = f"http://127.0.0.1:{client_port}"
            argv = [
                str(ETCD),
                "--name", name,
                "--data-dir", str(self.data / name),
                "--listen-client-urls", client_url,
                "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url,
                "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", initial,
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new",
                *(() if self.fsync else ("--unsafe-no-fsync",)),
            ]  # fmt: skip
            with (self.log_dir / f"etcd-{name}.log").open("ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs.clear()
        shutil.rmtree(self.data, ignore_errors=True)

    def connection(self, i: int) -> Http:
        return Http("127.0.0.1", self.client_ports[i % MEMBERS])


async def _wait_ready(etcd: EtcdCluster, progress: Progress) -> str:
    """Wait until a write goes through on every member; returns the API prefix that
    this etcd's gateway answers (``/v3`` from 3.4 on, ``/v3beta`` before)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        for proc in etcd.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {proc.returncode}; see {etcd.log_dir}")
        for prefix in ("/v3", "/v3beta"):
            conns = [etcd.connection(i) for i in range(MEMBERS)]
            try:
                for conn in conns:
                    await conn.post(f"{prefix}/kv/put", {"key": b64("bench/ready"), "value": ""})
                return prefix
            except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
                last = exc
            finally:
                for conn in conns:
                    await conn.close()
        progress.waiting(f"waiting for etcd ({last})")
        await asyncio.sleep(0.2)
    raise TimeoutError(f"etcd did not answer within {START_TIMEOUT_S} s: {last}")


def _txn(keys: list[str], lease: str) -> dict[str, Any]:
    return {
        "compare": [
            {"key": b64(k), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
            for k in keys
        ],
        "success": [
            {"request_put": {"key": b64(k), "value": b64(VALUE), "lease": lease}} for k in keys
        ],
    }


async def run(params: Params, log_dir: Path, progress: Progress, out: SectionResult) -> None:
    progress.step(f"etcd reference: starting {MEMBERS} members ({ETCD})")
    etcd = EtcdCluster(log_dir, fsync=params.fsync)
    try:
        etcd.start()
        prefix = await _wait_ready(etcd, progress)
        await _measure(etcd, prefix, params, progress, out)
    finally:
        etcd.close()
    version = subprocess.run(
        [str(ETCD), "--version"], capture_output=True, text=True, timeout=10
    ).stdout.splitlines()
    out.details["etcd_version"] = version[0] if version else ""


async def _measure(
    etcd: EtcdCluster, prefix: str, params: Params, progress: Progress, out: SectionResult
) -> None:
    n = params.names
    admin = etcd.connection(0)
    lanes = [etcd.connection(i) for i in range(max(params.concurrency, params.etcd_in_flight))]
    try:
        lease = str((await admin.post(f"{prefix}/lease/grant", {"TTL": LEASE_TTL_S}))["ID"])
        lane_of: dict[int, Http] = {}
        next_lane = iter(lanes)

        def conn() -> Http:
            # One connection per asyncio task (lane), taken on its first operation.
            task = id(asyncio.current_task())
            if task not in lane_of:
                lane_of[task] = next(next_lane)
            return lane_of[task]

        done: dict[str, int] = {ONE_PREFIX: 0, BATCH_PREFIX: 0}

        async def txn(keys: list[str]) -> None:
            reply = await conn().post(f"{prefix}/kv/txn", _txn(keys, lease))
            if not reply.get("succeeded"):
                raise RuntimeError(f"etcd txn did not succeed (a key existed?): {reply}")
            done[ONE_PREFIX if keys[0].startswith(ONE_PREFIX) else BATCH_PREFIX] += len(keys)

        progress.step(f"etcd one by one ({n:,} txns, {params.concurrency} in flight)")
        single = await run_lanes(
            lambda i: txn([f"{ONE_PREFIX}{i}"]),
            n,
            params.concurrency,
            progress,
            "names",
            budget_s=params.budget_s,
        )
        lane_of.clear()
        next_lane = iter(lanes)
        size = params.etcd_txn_ops
        txns = (n + size - 1) // size
        progress.step(
            f"etcd batched ({n:,} names, {size} per txn, {params.etcd_in_flight} txns in flight)"
        )
        batched = await run_lanes(
            lambda b: txn([f"{BATCH_PREFIX}{i}" for i in range(b * size, min(b * size + size, n))]),
            txns,
            params.etcd_in_flight,
            progress,
            "names",
            weight=size,
            budget_s=params.budget_s,
        )
        counted = await admin.post(
            f"{prefix}/kv/range",
            {"key": b64("bench/"), "range_end": b64("bench0"), "count_only": True},
        )
        keys = int(counted.get("count", 0))
        expected = done[ONE_PREFIX] + done[BATCH_PREFIX] + 1  # + the readiness key
        if keys != expected:
            raise RuntimeError(f"etcd holds {keys} bench keys, expected {expected}")
    finally:
        await admin.close()
        for lane in lanes:
            await lane.close()
    out.add(
        "one_by_one_per_s",
        f"etcd register one by one (c={params.concurrency})",
        single.per_s,
        "names/s",
    )
    out.add("one_by_one_p50_ms", "etcd txn one by one p50", single.p50_s * 1e3, "ms")
    out.add(
        "batched_per_s",
        f"etcd register batched ({size}/txn = max-txn-ops, {params.etcd_in_flight} in flight)",
        done[BATCH_PREFIX] / batched.wall_s,
        "names/s",
    )
    out.details.update(
        api_prefix=prefix,
        members=MEMBERS,
        names=n,
        keys_counted=keys,
        names_one_by_one=done[ONE_PREFIX],
        names_batched=done[BATCH_PREFIX],
        txn_ops=size,
        batched_in_flight=params.etcd_in_flight,
        one_by_one=single.to_json(),
        batched=batched.to_json(),
        note="max-txn-ops defaults to 128, so etcd batches are 128 names, not 1000",
    )
