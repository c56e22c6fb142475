"""G8 with real processes: every forged peer message of issue 14, replayed against a
3-node cluster (peer mTLS, as LocalCluster runs it) from an unauthenticated client and
from clients holding valid certificates of the cluster CA for other identities.

Each must be refused (the connection, or the message before the core sees it); after
all of them: the term and leader are what they were, no foreign member exists, no
member's address or incarnation changed, every name is where it was with the same
token, writes still work, and no node exited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from registry.core.commands import MemberDown, NameSpec, Register, encode
from registry.core.membership import MemberHeartbeat
from registry.core.messages import ConfState, Entry, Message, MessageType, SnapshotMeta
from registry.core.replica import Forward, PeerMessage
from registry.node.certs import NodeFiles, issue
from registry.testing.local_cluster import LocalCluster, cluster, wait_for
from registry.v1 import registry_pb2 as pb
from registry.wire.codec import peer_to_pb
from tests.security.peer_client import peer_channel, refused, send

NAMES = [f"sec/{i}" for i in range(6)]
HUGE = 2**64 - 1


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # lan timings: a loaded CI machine must not elect a new leader on its own while the
    # test asserts that the term did not move.
    with cluster(tmp_path_factory.mktemp("forged"), 3, preset="lan") as c:
        try:
            yield c
        except BaseException:
            print(c.log_tails(60))
            raise


def observed(c: LocalCluster) -> dict[str, object]:
    """What no forged message may change."""
    statuses = {n: c.status(n) for n in c.ids}
    return {
        "terms": {n: s.term for n, s in statuses.items()},
        "leaders": {n: s.leader for n, s in statuses.items()},
        "members": {
            n: sorted((m.id, m.address, m.incarnation, m.up) for m in s.members)
            for n, s in statuses.items()
        },
        "names": {name: c.owner(name) for name in NAMES},
    }


def forged(c: LocalCluster, target: str, claimed: str, victim: str) -> dict[str, list[PeerMessage]]:
    """The forged messages of issue 14 addressed to ``target``, each claiming to come
    from ``claimed`` (the member heartbeats also speak for ``victim``)."""
    status = c.status(target)
    term, commit, leader = status.term, status.commit_index, status.leader
    injected = encode(Register(specs=(NameSpec(name="sec/injected", kind="counter"),)))
    meta = SnapshotMeta(index=commit + 100, term=term, conf=ConfState(voters=frozenset(c.ids)))
    victim_inc = next(m.incarnation for m in status.members if m.id == victim)

    def snapshot(offset: int, chunk: bytes, done: bool) -> Message:
        return Message(
            type=MessageType.SNAPSHOT,
            src=claimed,
            dst=target,
            term=term,
            snapshot=meta,
            chunk=chunk,
            offset=offset,
            done=done,
        )

    big = 1 << 20
    return {
        "huge term heartbeat": [
            Message(type=MessageType.HEARTBEAT, src=claimed, dst=target, term=HUGE, commit=10**9)
        ],
        "APPEND in the current term carrying a Register": [
            Message(
                type=MessageType.APPEND,
                src=claimed,
                dst=target,
                term=term,
                index=commit,
                log_term=term,
                entries=(Entry(term=term, index=commit + 1, data=injected),),
                commit=commit + 1,
            )
        ],
        "big SNAPSHOT chunks, then a final chunk that does not decode": [
            *(snapshot(i * big, b"\0" * big, False) for i in range(3)),
            snapshot(0, b"not json", True),
        ],
        "rogue member heartbeats with a lease; the victim at incarnation 10**6": [
            MemberHeartbeat(
                src=who,
                dst=leader,
                seq=seq,
                incarnation=inc,
                address="127.0.0.1:6666",
                has_lease=True,
                applied=commit,
            )
            for seq in range(1, 4)
            for who, inc in ((claimed, 1), (victim, 10**6))
        ],
        "Forward carrying MemberDown": [
            Forward(
                src=claimed,
                dst=leader,
                data=encode(MemberDown(node=victim, incarnation=victim_inc)),
            )
        ],
        "term+1 heartbeats, 3 Hz for 3 s": [
            Message(type=MessageType.HEARTBEAT, src=claimed, dst=target, term=term + 1, context=i)
            for i in range(9)
        ],
    }


PACED = "term+1 heartbeats, 3 Hz for 3 s"


def replay(
    c: LocalCluster,
    creds: NodeFiles | None,
    claimed: Callable[[str], str],
    *,
    victim: str,
    only: tuple[str, ...] = (),
    ca_only: bool = False,
) -> list[grpc.RpcError]:
    """Send the forged messages (all, or ``only`` these) to every node over ``creds``,
    one stream each, the nodes in parallel; returns the errors of refused streams."""

    def one(target: str) -> list[grpc.RpcError]:
        errors = []
        channel = peer_channel(c.peer_addr[target], target, creds, ca_only=ca_only)
        try:
            for what, batch in forged(c, target, claimed(target), victim).items():
                if only and what not in only:
                    continue
                try:
                    send(
                        channel,
                        [peer_to_pb(m) for m in batch],
                        cluster_id=c.cluster_id,
                        every_s=1 / 3 if what == PACED else 0.0,
                    )
                except grpc.RpcError as exc:
                    errors.append(exc)
        finally:
            channel.close()
        return errors

    with ThreadPoolExecutor(len(c.ids)) as pool:
        return [e for errors in pool.map(one, c.ids) for e in errors]


def _codes(errors: list[grpc.RpcError]) -> list[tuple[object, object]]:
    return [(e.code(), e.details()) for e in errors]


def test_forged_peer_messages_change_nothing(c: LocalCluster) -> None:
    for i, name in enumerate(NAMES):
        c.stub(c.ids[i % 3]).Register(
            pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="counter")), timeout=5
        )
    wait_for("every name placed", lambda: all(c.owner(n) for n in NAMES), 15)
    before = observed(c)
    leader = c.status("n1").leader
    liar = next(n for n in c.ids if n != leader)
    victim = next(n for n in c.ids if n != liar)  # whose identity the heartbeats abuse
    evil = issue(c.root / "certs", "evil")

    # 1. No client certificate (plaintext, or TLS with the CA only): the handshake fails.
    for creds, ca_only in ((None, False), (c.certs[liar], True)):
        errors = replay(c, creds, lambda t: leader, victim=victim, ca_only=ca_only)
        assert len(errors) == 3 * len(forged(c, leader, leader, victim)), _codes(errors)
        assert all(e.code() is grpc.StatusCode.UNAVAILABLE for e in errors), _codes(errors)
    # 2. The client port carries no peer service.
    with grpc.insecure_channel(c.nodes["n1"].grpc_addr) as channel:
        with pytest.raises(grpc.RpcError) as info:
            send(channel, [], cluster_id=c.cluster_id)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    # 3. Valid certificates of other identities: a follower's, claiming to be the
    #    leader; one the CA issued to "evil", speaking as evil.
    assert not _codes(replay(c, c.certs[liar], lambda t: leader, victim=victim))
    assert not _codes(replay(c, evil, lambda t: "evil", victim=victim))
    # 4. The follower as itself, with what the guard refuses from a member: an absurd
    #    term, leader traffic in another's term, a Forward it is not entitled to.
    own = (
        "huge term heartbeat",
        "APPEND in the current term carrying a Register",
        "big SNAPSHOT chunks, then a final chunk that does not decode",
        "Forward carrying MemberDown",
    )
    assert not _codes(replay(c, c.certs[liar], lambda t: liar, victim=victim, only=own))

    def counted() -> dict[str, dict[str, float]] | None:
        seen = {n: refused(c, n) for n in c.ids}
        everywhere = all(
            seen[n].get("identity_mismatch", 0) >= 5
            and seen[n].get("unknown_sender", 0) >= 1
            and seen[n].get("huge_value", 0) >= 1
            for n in c.ids
        )
        # Member traffic and leader traffic are refused where they are addressed to.
        anywhere = all(
            sum(seen[n].get(reason, 0) for n in c.ids) >= 1
            for reason in ("unknown_member", "forward_not_allowed", "second_leader")
        )
        return seen if everywhere and anywhere else None

    seen = wait_for("every refusal counted", counted, 15)
    print("refusals by node:", {n: {k: int(v) for k, v in r.items()} for n, r in seen.items()})
    assert observed(c) == before
    reply = c.stub(liar).Register(
        pb.RegisterRequest(spec=pb.NameSpec(name="sec/after", kind="counter")), timeout=5
    )
    assert reply.index > 0
    with pytest.raises(grpc.RpcError) as missing:
        c.stub(liar).WhereIs(pb.WhereIsRequest(name="sec/injected"), timeout=5)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert not c.crashed()
