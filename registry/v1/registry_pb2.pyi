from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class NameSpec(_message.Message):
    __slots__ = ("name", "kind", "args", "roles", "priority", "restart", "max_restarts", "restart_window", "lazy", "idle_after")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    RESTART_WINDOW_FIELD_NUMBER: _ClassVar[int]
    LAZY_FIELD_NUMBER: _ClassVar[int]
    IDLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    args: bytes
    roles: _containers.RepeatedScalarFieldContainer[str]
    priority: _containers.RepeatedCompositeFieldContainer[Tier]
    restart: str
    max_restarts: int
    restart_window: float
    lazy: bool
    idle_after: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., args: _Optional[bytes] = ..., roles: _Optional[_Iterable[str]] = ..., priority: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., restart: _Optional[str] = ..., max_restarts: _Optional[int] = ..., restart_window: _Optional[float] = ..., lazy: _Optional[bool] = ..., idle_after: _Optional[float] = ...) -> None: ...

class Location(_message.Message):
    __slots__ = ("name", "node", "address", "token", "stale", "kind", "call_address", "active")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CALL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: str
    address: str
    token: int
    stale: bool
    kind: str
    call_address: str
    active: bool
    def __init__(self, name: _Optional[str] = ..., node: _Optional[str] = ..., address: _Optional[str] = ..., token: _Optional[int] = ..., stale: _Optional[bool] = ..., kind: _Optional[str] = ..., call_address: _Optional[str] = ..., active: _Optional[bool] = ...) -> None: ...

class Redirect(_message.Message):
    __slots__ = ("leader", "leader_address", "owner", "owner_address")
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    OWNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    leader: str
    leader_address: str
    owner: str
    owner_address: str
    def __init__(self, leader: _Optional[str] = ..., leader_address: _Optional[str] = ..., owner: _Optional[str] = ..., owner_address: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: NameSpec
    def __init__(self, spec: _Optional[_Union[NameSpec, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class RegisterManyRequest(_message.Message):
    __slots__ = ("specs",)
    SPECS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[NameSpec]
    def __init__(self, specs: _Optional[_Iterable[_Union[NameSpec, _Mapping]]] = ...) -> None: ...

class RegisterManyResponse(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class UnregisterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnregisterResponse(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class WhereIsRequest(_message.Message):
    __slots__ = ("name", "consistent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    consistent: bool
    def __init__(self, name: _Optional[str] = ..., consistent: _Optional[bool] = ...) -> None: ...

class WhereIsResponse(_message.Message):
    __slots__ = ("location", "waiting")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    location: Location
    waiting: bool
    def __init__(self, location: _Optional[_Union[Location, _Mapping]] = ..., waiting: _Optional[bool] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("prefix", "limit")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("locations", "truncated")
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    locations: _containers.RepeatedCompositeFieldContainer[Location]
    truncated: bool
    def __init__(self, locations: _Optional[_Iterable[_Union[Location, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("name", "payload", "forwarded")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    forwarded: bool
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., forwarded: _Optional[bool] = ...) -> None: ...

class CallResponse(_message.Message):
    __slots__ = ("payload", "node", "token", "call_address")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CALL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    node: str
    token: int
    call_address: str
    def __init__(self, payload: _Optional[bytes] = ..., node: _Optional[str] = ..., token: _Optional[int] = ..., call_address: _Optional[str] = ...) -> None: ...

class CastRequest(_message.Message):
    __slots__ = ("name", "payload", "forwarded")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    forwarded: bool
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., forwarded: _Optional[bool] = ...) -> None: ...

class CastResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupRequest(_message.Message):
    __slots__ = ("group", "name")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    group: str
    name: str
    def __init__(self, group: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GroupResponse(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class MembersRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class MembersResponse(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("group", "payload")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    group: str
    payload: bytes
    def __init__(self, group: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("delivered",)
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    delivered: int
    def __init__(self, delivered: _Optional[int] = ...) -> None: ...

class MultiCallRequest(_message.Message):
    __slots__ = ("group", "payload", "timeout_s")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    group: str
    payload: bytes
    timeout_s: float
    def __init__(self, group: _Optional[str] = ..., payload: _Optional[bytes] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class CallResult(_message.Message):
    __slots__ = ("name", "payload", "error_code", "error", "error_reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    error_code: str
    error: str
    error_reason: str
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., error_code: _Optional[str] = ..., error: _Optional[str] = ..., error_reason: _Optional[str] = ...) -> None: ...

class MultiCallResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CallResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CallResult, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("kind", "location", "index")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchEvent.Kind]
        KIND_RESET: _ClassVar[WatchEvent.Kind]
        KIND_PLACED: _ClassVar[WatchEvent.Kind]
        KIND_REMOVED: _ClassVar[WatchEvent.Kind]
        KIND_SYNCED: _ClassVar[WatchEvent.Kind]
    KIND_UNSPECIFIED: WatchEvent.Kind
    KIND_RESET: WatchEvent.Kind
    KIND_PLACED: WatchEvent.Kind
    KIND_REMOVED: WatchEvent.Kind
    KIND_SYNCED: WatchEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEvent.Kind
    location: Location
    index: int
    def __init__(self, kind: _Optional[_Union[WatchEvent.Kind, str]] = ..., location: _Optional[_Union[Location, _Mapping]] = ..., index: _Optional[int] = ...) -> None: ...

class WatchEvents(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ...) -> None: ...

class ClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MemberStatus(_message.Message):
    __slots__ = ("id", "address", "roles", "up", "voter", "incarnation", "activations")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    up: bool
    voter: bool
    incarnation: int
    activations: int
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., up: _Optional[bool] = ..., voter: _Optional[bool] = ..., incarnation: _Optional[int] = ..., activations: _Optional[int] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("node", "leader", "term", "quorum", "commit_index", "applied_index", "members", "names", "lease_remaining_s", "leader_address")
    NODE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_S_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node: str
    leader: str
    term: int
    quorum: bool
    commit_index: int
    applied_index: int
    members: _containers.RepeatedCompositeFieldContainer[MemberStatus]
    names: int
    lease_remaining_s: float
    leader_address: str
    def __init__(self, node: _Optional[str] = ..., leader: _Optional[str] = ..., term: _Optional[int] = ..., quorum: _Optional[bool] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., members: _Optional[_Iterable[_Union[MemberStatus, _Mapping]]] = ..., names: _Optional[int] = ..., lease_remaining_s: _Optional[float] = ..., leader_address: _Optional[str] = ...) -> None: ...
