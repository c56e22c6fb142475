"""Size and speed of the log entry encodings (binary v1 vs the older JSON), not a test.

    .venv/bin/python scripts/bench_commands.py

Rows: a 1-name ``Register`` (one-by-one registration), a 1000-name ``RegisterMany`` (the
bench's batch), and one name with 4 MiB of ``args`` (the largest payload a spec carries).
Times are the best of five runs of a loop, per command.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from registry.core.commands import Command, NameSpec, Register, decode, encode


def best_us(fn: Callable[[], object], loops: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        runs.append((time.perf_counter() - start) / loops)
    return min(runs) * 1e6


def row(label: str, command: Command, loops: int) -> None:
    for binary in (False, True):
        data = encode(command, binary=binary)
        enc = best_us(lambda: encode(command, binary=binary), loops)  # noqa: B023
        dec = best_us(lambda: decode(data), loops)  # noqa: B023
        codec = "binary" if binary else "json  "
        print(
            f"{label:<24} {codec} {len(data):>10,} B  encode {enc:>9.1f} µs  decode {dec:>9.1f} µs"
        )


def main() -> None:
    row("register 1 name", Register(specs=(NameSpec(name="bench/one/12345", kind="echo"),)), 20000)
    many = Register(
        specs=tuple(NameSpec(name=f"bench/batch/{i}", kind="echo") for i in range(1000))
    )
    row("register_many 1000", many, 50)
    big = Register(specs=(NameSpec(name="big", kind="k", args=bytes(4 << 20)),))
    row("register 4 MiB args", big, 5)


if __name__ == "__main__":
    main()
