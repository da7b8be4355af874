"""Every `ApplicationError` type orch raises, and whether a retry can help.

Activities raise `ApplicationError(..., type=ErrorType.X)`; workflows build their retry policies'
`non_retryable_error_types` from `NON_RETRYABLE_ERROR_TYPES`, and whoever tells failures apart
compares `ApplicationError.type` with a member here, never reads a message.
The values are what the Temporal UI and `temporal workflow show` print: keep them stable.

A type marked retryable may still be raised `non_retryable=True` for one instance (orch hft answering
4xx to `HftApiError`): the raise site knows that one answer cannot change.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    retryable: bool

    def __new__(cls, value: str, retryable: bool) -> ErrorType:
        member = str.__new__(cls, value)
        member._value_ = value
        member.retryable = retryable
        return member

    # ---- Input and refusals: the same request fails the same way every time ---------------------
    INVALID_INPUT = "InvalidInput", False
    UNKNOWN_STRATEGY = "UnknownStrategy", False
    COMMAND_REJECTED = "CommandRejected", False  # no command slot, or SystemState refused the update
    COMMAND_FAILED = "CommandFailed", False  # a command workflow's own failure, carrying its result
    # SystemState refused a scan's candidates: their strategy is no longer the active one.
    STRATEGY_NOT_ACTIVE = "StrategyNotActive", False
    NOTHING_TO_RESUME = "NothingToResume", False
    # ---- orch hft ------------------------------------------------------------------------------
    HFT_REQUEST_REJECTED = "HftRequestRejected", False  # orch hft answered 4xx to the cycle
    HFT_API_ERROR = "HftApiError", True  # a 5xx is retried; a 4xx is raised non-retryable
    HFT_UNAVAILABLE = "HftUnavailable", True
    KILL_NOT_CONFIRMED = "KillNotConfirmed", True
    NOT_SETTLED = "NotSettled", False  # the emergency's own wait for orders and positions ran out
    RESUME_NOT_CONFIRMED = "ResumeNotConfirmed", True
    SIGNAL_FAILED = "SignalFailed", True
    # ---- Market data ---------------------------------------------------------------------------
    DATA_SOURCE_REJECTED = "DataSourceRejected", False
    DATA_SOURCE_UNAVAILABLE = "DataSourceUnavailable", True
    NO_HISTORY = "NoHistory", True
    INSUFFICIENT_HISTORY = "InsufficientHistory", False
    DATA_FLOW_FAILED = "DataFlowFailed", True
    TRADING_MODE_REFUSED = "TradingModeRefused", False
    DATA_UNAVAILABLE = "DataUnavailable", True
    # ---- Discovery -----------------------------------------------------------------------------
    DRAIN_TIMEOUT = "DrainTimeout", False
    NO_WORKERS = "NoWorkers", True
    SCAN_TIMEOUT = "ScanTimeout", True
    SCAN_FAILED = "ScanFailed", False
    INVALID_SCAN_OUTPUT = "InvalidScanOutput", False
    # ---- Agents --------------------------------------------------------------------------------
    AGENT_ERROR = "AgentError", False  # the agent's own code raised: counted, and retrying repeats it


class RefusalCode(StrEnum):
    """Why `orch hft` refused a request: the `code` of its error body and of `HftApiError`, and of each
    plan `POST /plans` did not take. Callers switch on it; the message beside it is for people."""

    UNAUTHORIZED = "unauthorized"
    MALFORMED_REQUEST = "malformed_request"  # empty or not JSON, or a query parameter out of range
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_BODY = "invalid_body"  # the body does not match its schema
    INVALID_INSTRUMENT = "invalid_instrument"  # no instrument rule allows this symbol, size or price
    NO_SUCH_ROUTE = "no_such_route"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NO_SUCH_ORDER = "no_such_order"
    ORDER_NOT_OPEN = "order_not_open"  # nothing left to cancel
    NOT_RECONCILED = "not_reconciled"  # the journal and the broker disagree: no resume yet
    # ---- Plans (`PlanAck.codes`) -----------------------------------------------------------------
    PLAN_EXISTS = "plan_exists"  # accepted before: a retried send finds it there
    PLAN_REFUSED = "plan_refused"  # expired, unknown symbol, or exits that do not bracket the entry


# One list for every retry policy: a type's name is unique, so a workflow whose activities never raise
# one loses nothing by listing it, and no policy can forget one that they do.
NON_RETRYABLE_ERROR_TYPES: list[str] = [t.value for t in ErrorType if not t.retryable]
