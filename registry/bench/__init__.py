"""``registry bench``: throughput, latency, failover, rebalance and memory on real processes.

Each section lives in its own module and returns ``Figure`` values (``results``); the
runner (``runner``) starts the clusters, runs the sections in order, prints progress on
stderr, the table (``table``) on stdout and writes every figure to JSON. References are
measured in the same run so that ratios hold on a noisy machine: a raw ``grpc.aio`` echo
(``ref_grpc``) and a 3-member etcd cluster doing the same registrations (``ref_etcd``).

Benchmarks are not tests: targets are reported (pass/miss), never asserted.
"""
