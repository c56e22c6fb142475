from registry.v1 import raft_pb2 as _raft_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemberHeartbeat(_message.Message):
    __slots__ = ("src", "dst", "seq", "incarnation", "address", "roles", "kinds", "has_lease", "draining", "applied")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    HAS_LEASE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    seq: int
    incarnation: int
    address: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    has_lease: bool
    draining: bool
    applied: int
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., seq: _Optional[int] = ..., incarnation: _Optional[int] = ..., address: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[str]] = ..., has_lease: _Optional[bool] = ..., draining: _Optional[bool] = ..., applied: _Optional[int] = ...) -> None: ...

class MemberAck(_message.Message):
    __slots__ = ("src", "dst", "seq", "incarnation", "index")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    seq: int
    incarnation: int
    index: int
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., seq: _Optional[int] = ..., incarnation: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class Forward(_message.Message):
    __slots__ = ("src", "dst", "data")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    data: bytes
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PeerEnvelope(_message.Message):
    __slots__ = ("raft", "heartbeat", "ack", "forward", "batch")
    RAFT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    FORWARD_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    raft: _raft_pb2.Message
    heartbeat: MemberHeartbeat
    ack: MemberAck
    forward: Forward
    batch: PeerBatch
    def __init__(self, raft: _Optional[_Union[_raft_pb2.Message, _Mapping]] = ..., heartbeat: _Optional[_Union[MemberHeartbeat, _Mapping]] = ..., ack: _Optional[_Union[MemberAck, _Mapping]] = ..., forward: _Optional[_Union[Forward, _Mapping]] = ..., batch: _Optional[_Union[PeerBatch, _Mapping]] = ...) -> None: ...

class PeerBatch(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedCompositeFieldContainer[PeerEnvelope]
    def __init__(self, envelopes: _Optional[_Iterable[_Union[PeerEnvelope, _Mapping]]] = ...) -> None: ...

class PeerStreamEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
