from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToHost(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[HostCommand]
    def __init__(self, commands: _Optional[_Iterable[_Union[HostCommand, _Mapping]]] = ...) -> None: ...

class HostCommand(_message.Message):
    __slots__ = ("init", "start", "stop", "begin_handoff", "call", "cast", "sub_lease", "shutdown", "reload_tokens", "checkpoint_done")
    INIT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    BEGIN_HANDOFF_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    SUB_LEASE_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    RELOAD_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_DONE_FIELD_NUMBER: _ClassVar[int]
    init: HostInit
    start: HostStart
    stop: HostStop
    begin_handoff: HostBeginHandoff
    call: HostCall
    cast: HostCast
    sub_lease: SubLease
    shutdown: HostShutdown
    reload_tokens: HostReloadTokens
    checkpoint_done: CheckpointDone
    def __init__(self, init: _Optional[_Union[HostInit, _Mapping]] = ..., start: _Optional[_Union[HostStart, _Mapping]] = ..., stop: _Optional[_Union[HostStop, _Mapping]] = ..., begin_handoff: _Optional[_Union[HostBeginHandoff, _Mapping]] = ..., call: _Optional[_Union[HostCall, _Mapping]] = ..., cast: _Optional[_Union[HostCast, _Mapping]] = ..., sub_lease: _Optional[_Union[SubLease, _Mapping]] = ..., shutdown: _Optional[_Union[HostShutdown, _Mapping]] = ..., reload_tokens: _Optional[_Union[HostReloadTokens, _Mapping]] = ..., checkpoint_done: _Optional[_Union[CheckpointDone, _Mapping]] = ...) -> None: ...

class HostInit(_message.Message):
    __slots__ = ("node", "host", "worker_modules", "fence_grace", "handoff_deadline", "max_state_bytes", "mailbox_limit", "mailbox_bytes", "call_bind", "tls_cert", "tls_key", "tls_client_ca", "auth", "token_file", "max_payload_bytes", "max_rpcs", "max_rpcs_per_client", "tracing")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    WORKER_MODULES_FIELD_NUMBER: _ClassVar[int]
    FENCE_GRACE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    MAX_STATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_BYTES_FIELD_NUMBER: _ClassVar[int]
    CALL_BIND_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_FIELD_NUMBER: _ClassVar[int]
    TLS_KEY_FIELD_NUMBER: _ClassVar[int]
    TLS_CLIENT_CA_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FILE_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RPCS_FIELD_NUMBER: _ClassVar[int]
    MAX_RPCS_PER_CLIENT_FIELD_NUMBER: _ClassVar[int]
    TRACING_FIELD_NUMBER: _ClassVar[int]
    node: str
    host: int
    worker_modules: _containers.RepeatedScalarFieldContainer[str]
    fence_grace: float
    handoff_deadline: float
    max_state_bytes: int
    mailbox_limit: int
    mailbox_bytes: int
    call_bind: str
    tls_cert: bytes
    tls_key: bytes
    tls_client_ca: bytes
    auth: str
    token_file: str
    max_payload_bytes: int
    max_rpcs: int
    max_rpcs_per_client: int
    tracing: str
    def __init__(self, node: _Optional[str] = ..., host: _Optional[int] = ..., worker_modules: _Optional[_Iterable[str]] = ..., fence_grace: _Optional[float] = ..., handoff_deadline: _Optional[float] = ..., max_state_bytes: _Optional[int] = ..., mailbox_limit: _Optional[int] = ..., mailbox_bytes: _Optional[int] = ..., call_bind: _Optional[str] = ..., tls_cert: _Optional[bytes] = ..., tls_key: _Optional[bytes] = ..., tls_client_ca: _Optional[bytes] = ..., auth: _Optional[str] = ..., token_file: _Optional[str] = ..., max_payload_bytes: _Optional[int] = ..., max_rpcs: _Optional[int] = ..., max_rpcs_per_client: _Optional[int] = ..., tracing: _Optional[str] = ...) -> None: ...

class HostStart(_message.Message):
    __slots__ = ("name", "kind", "args", "token", "reason", "has_state", "state", "restored_from", "restart_mode", "max_restarts", "restart_window", "reminders", "lazy", "idle_after")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HAS_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FROM_FIELD_NUMBER: _ClassVar[int]
    RESTART_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    RESTART_WINDOW_FIELD_NUMBER: _ClassVar[int]
    REMINDERS_FIELD_NUMBER: _ClassVar[int]
    LAZY_FIELD_NUMBER: _ClassVar[int]
    IDLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    args: bytes
    token: int
    reason: str
    has_state: bool
    state: bytes
    restored_from: int
    restart_mode: str
    max_restarts: int
    restart_window: float
    reminders: _containers.RepeatedCompositeFieldContainer[ReminderState]
    lazy: bool
    idle_after: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., args: _Optional[bytes] = ..., token: _Optional[int] = ..., reason: _Optional[str] = ..., has_state: _Optional[bool] = ..., state: _Optional[bytes] = ..., restored_from: _Optional[int] = ..., restart_mode: _Optional[str] = ..., max_restarts: _Optional[int] = ..., restart_window: _Optional[float] = ..., reminders: _Optional[_Iterable[_Union[ReminderState, _Mapping]]] = ..., lazy: _Optional[bool] = ..., idle_after: _Optional[float] = ...) -> None: ...

class ReminderState(_message.Message):
    __slots__ = ("reminder", "due", "every", "fired")
    REMINDER_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    reminder: str
    due: float
    every: float
    fired: int
    def __init__(self, reminder: _Optional[str] = ..., due: _Optional[float] = ..., every: _Optional[float] = ..., fired: _Optional[int] = ...) -> None: ...

class HostStop(_message.Message):
    __slots__ = ("name", "token", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    reason: str
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class HostBeginHandoff(_message.Message):
    __slots__ = ("name", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class HostCall(_message.Message):
    __slots__ = ("id", "name", "payload", "deadline")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    payload: bytes
    deadline: float
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., payload: _Optional[bytes] = ..., deadline: _Optional[float] = ...) -> None: ...

class HostCast(_message.Message):
    __slots__ = ("name", "payload", "id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload: bytes
    id: int
    def __init__(self, name: _Optional[str] = ..., payload: _Optional[bytes] = ..., id: _Optional[int] = ...) -> None: ...

class SubLease(_message.Message):
    __slots__ = ("until",)
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    until: float
    def __init__(self, until: _Optional[float] = ...) -> None: ...

class HostShutdown(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostReloadTokens(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FromHost(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[HostEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[HostEvent, _Mapping]]] = ...) -> None: ...

class HostEvent(_message.Message):
    __slots__ = ("hello", "reply", "ended", "handoff", "fatal", "stopped", "checkpoint", "quit", "remind", "activity", "call_stats")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    QUIT_FIELD_NUMBER: _ClassVar[int]
    REMIND_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    CALL_STATS_FIELD_NUMBER: _ClassVar[int]
    hello: HostHello
    reply: CallReply
    ended: ActivationEnded
    handoff: HandoffReport
    fatal: HostFatal
    stopped: HostStopped
    checkpoint: CheckpointRequest
    quit: Quit
    remind: RemindRequest
    activity: Activity
    call_stats: CallStats
    def __init__(self, hello: _Optional[_Union[HostHello, _Mapping]] = ..., reply: _Optional[_Union[CallReply, _Mapping]] = ..., ended: _Optional[_Union[ActivationEnded, _Mapping]] = ..., handoff: _Optional[_Union[HandoffReport, _Mapping]] = ..., fatal: _Optional[_Union[HostFatal, _Mapping]] = ..., stopped: _Optional[_Union[HostStopped, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointRequest, _Mapping]] = ..., quit: _Optional[_Union[Quit, _Mapping]] = ..., remind: _Optional[_Union[RemindRequest, _Mapping]] = ..., activity: _Optional[_Union[Activity, _Mapping]] = ..., call_stats: _Optional[_Union[CallStats, _Mapping]] = ...) -> None: ...

class CallStats(_message.Message):
    __slots__ = ("kinds",)
    KINDS_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedCompositeFieldContainer[KindCalls]
    def __init__(self, kinds: _Optional[_Iterable[_Union[KindCalls, _Mapping]]] = ...) -> None: ...

class KindCalls(_message.Message):
    __slots__ = ("kind", "ok", "error", "cancelled", "buckets", "seconds")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    ok: int
    error: int
    cancelled: int
    buckets: _containers.RepeatedScalarFieldContainer[int]
    seconds: float
    def __init__(self, kind: _Optional[str] = ..., ok: _Optional[int] = ..., error: _Optional[int] = ..., cancelled: _Optional[int] = ..., buckets: _Optional[_Iterable[int]] = ..., seconds: _Optional[float] = ...) -> None: ...

class HostHello(_message.Message):
    __slots__ = ("kinds", "error", "pid", "call_port")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CALL_PORT_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    error: str
    pid: int
    call_port: int
    def __init__(self, kinds: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ..., pid: _Optional[int] = ..., call_port: _Optional[int] = ...) -> None: ...

class CallReply(_message.Message):
    __slots__ = ("id", "payload", "error", "message", "token")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: int
    payload: bytes
    error: str
    message: str
    token: int
    def __init__(self, id: _Optional[int] = ..., payload: _Optional[bytes] = ..., error: _Optional[str] = ..., message: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class ActivationEnded(_message.Message):
    __slots__ = ("name", "token", "failure")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    failure: str
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ..., failure: _Optional[str] = ...) -> None: ...

class HandoffReport(_message.Message):
    __slots__ = ("name", "token", "ignored", "has_state", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    HAS_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    ignored: bool
    has_state: bool
    state: bytes
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ..., ignored: _Optional[bool] = ..., has_state: _Optional[bool] = ..., state: _Optional[bytes] = ...) -> None: ...

class HostFatal(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class HostStopped(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Quit(_message.Message):
    __slots__ = ("name", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class RemindRequest(_message.Message):
    __slots__ = ("id", "name", "token", "reminder", "op", "due", "every", "period")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REMINDER_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    token: int
    reminder: str
    op: str
    due: float
    every: float
    period: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., token: _Optional[int] = ..., reminder: _Optional[str] = ..., op: _Optional[str] = ..., due: _Optional[float] = ..., every: _Optional[float] = ..., period: _Optional[int] = ...) -> None: ...

class Activity(_message.Message):
    __slots__ = ("name", "token", "active")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    active: bool
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ..., active: _Optional[bool] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("id", "name", "token", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    token: int
    state: bytes
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., token: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class CheckpointDone(_message.Message):
    __slots__ = ("id", "index", "error", "message", "current_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: int
    index: int
    error: str
    message: str
    current_token: int
    def __init__(self, id: _Optional[int] = ..., index: _Optional[int] = ..., error: _Optional[str] = ..., message: _Optional[str] = ..., current_token: _Optional[int] = ...) -> None: ...
