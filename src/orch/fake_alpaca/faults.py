"""Injected faults: the fake Alpaca server hangs, fails, slows down or drops its stream on request.

One fault per API surface at a time (`trading`, `data`, `stream`); a new one replaces the old. A
fault lasts until cleared, or for `count` requests (stream: refused connection attempts; a mute
stream ignores `count`). A hang also ends after `seconds` if given; clearing a fault releases every
request it holds, so a test that stops the server never waits on its own hang.

HTTP faults: `hang` (no answer), `error` (answer `status`, 503 by default), `latency` (answer late).
Stream faults: `disconnect` (drop every connection and refuse new ones) and `mute` (stay connected,
send nothing); `hang` means `mute` and `error` means `disconnect` there.

Nothing here locks: the owner (`FakeAlpaca`) serialises access.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

APIS = ("trading", "data", "stream")
HTTP_FAULTS = ("hang", "error", "latency")
STREAM_FAULTS = ("disconnect", "mute")
_STREAM_ALIASES = {"hang": "mute", "error": "disconnect"}
_ids = itertools.count(1)


@dataclass
class Fault:
    api: str
    kind: str
    status: int = 503
    seconds: float | None = None
    count: int | None = None  # requests (or stream connections) still to affect; None: until cleared
    id: int = field(default_factory=lambda: next(_ids))
    released: bool = False  # set when cleared: requests held by a hang go on

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "api": self.api,
            "kind": self.kind,
            "status": self.status,
            "seconds": self.seconds,
            "count": self.count,
        }


class FaultBook:
    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._spent: list[Fault] = []  # counted down to zero, but may still hold hung requests

    def inject(
        self,
        api: str = "all",
        kind: str = "error",
        status: int = 503,
        seconds: float | None = None,
        count: int | None = None,
    ) -> list[Fault]:
        apis = APIS if api == "all" else (api,)
        if any(a not in APIS for a in apis):
            raise ValueError(f"api must be one of {(*APIS, 'all')}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1")
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must be >= 0")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status")
        if kind == "latency" and seconds is None:
            raise ValueError("a latency fault needs seconds")
        injected = []
        for target in apis:
            target_kind = _STREAM_ALIASES.get(kind, kind) if target == "stream" else kind
            allowed = STREAM_FAULTS if target == "stream" else HTTP_FAULTS
            if target_kind not in allowed:
                if api == "all":
                    continue  # "latency everywhere" means everywhere it makes sense
                raise ValueError(f"{target} faults are {allowed}")
            self.clear(target)
            self._faults[target] = Fault(target, target_kind, status, seconds, count)
            injected.append(self._faults[target])
        return injected

    def clear(self, api: str | None = None) -> None:
        targets = APIS if api in (None, "all") else (api,)
        for target in targets:
            fault = self._faults.pop(target, None)
            if fault is not None:
                fault.released = True
        for fault in self._spent:
            if fault.api in targets:
                fault.released = True
        self._spent = [fault for fault in self._spent if not fault.released]

    def active(self, api: str) -> Fault | None:
        return self._faults.get(api)

    def take(self, api: str) -> Fault | None:
        """The fault that applies to one more request, counting it down."""
        fault = self._faults.get(api)
        if fault is not None and fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self._spent.append(self._faults.pop(api))
        return fault

    def to_list(self) -> list[dict[str, Any]]:
        return [fault.to_dict() for fault in self._faults.values()]
