"""The crash oracle: what a data directory may contain after a crash, given what was acknowledged.

A mutation is *acknowledged* when its response (HTTP 200, or the writer's ``ACK`` line) reached the
test. At most one mutation is *in flight* when the writer dies; it may or may not have committed. So
after a restart every id must hold its last acknowledged state, or the in-flight mutation's state
when that mutation touched it, and nothing else: no lost write, no resurrected delete, no phantom
value, no id that was never sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DIM = 16

# The state of one id: (values, metadata), or None for "absent" (never written, or deleted).
State = tuple[tuple[float, ...], Any] | None


def vector_for(vid: str, step: int) -> list[float]:
    """A vector unique to (id, step): step and the id's number lead, so exact search finds it alone."""
    number = int("".join(ch for ch in vid if ch.isdigit()) or 0)
    return [float(step), float(number)] + [0.5] * (DIM - 2)


@dataclass
class Oracle:
    acked: dict[str, State] = field(default_factory=dict)
    pending: dict[str, State] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)
    acknowledged_mutations: int = 0
    lost_in_flight: int = 0  # kills that landed while a mutation was in flight

    def send(self, changes: dict[str, State]) -> None:
        """A mutation is about to be sent; ``changes`` is what it does to each id it names."""
        assert not self.pending, "one mutation in flight at a time"
        self.pending = dict(changes)
        self.sent.update(changes)

    def ack(self) -> None:
        self.acked.update(self.pending)
        self.pending = {}
        self.acknowledged_mutations += 1

    def allowed(self, vid: str) -> list[State]:
        options = [self.acked.get(vid)]
        if vid in self.pending:
            options.append(self.pending[vid])
        return options

    def check(self, found: dict[str, State], listed: set[str]) -> list[str]:
        """Compare what the restarted store holds with what is allowed; returns the violations."""
        problems: list[str] = []
        for vid in sorted(self.sent | set(found) | listed):
            if vid not in self.sent:
                problems.append(f"{vid} appeared but was never sent")
                continue
            got = found.get(vid)
            if got not in self.allowed(vid):
                problems.append(f"{vid}: found {_short(got)}, allowed {[_short(s) for s in self.allowed(vid)]}")
            if (got is not None) != (vid in listed):
                problems.append(f"{vid}: get_by_ids and list disagree")
        return problems

    def settle(self, found: dict[str, State]) -> None:
        """After a check: the in-flight mutation's fate is now known (durable either way)."""
        if self.pending:
            self.lost_in_flight += 1
            for vid in self.pending:
                self.acked[vid] = found.get(vid)
            self.pending = {}

    def present(self) -> list[str]:
        return sorted(v for v, s in self.acked.items() if s is not None)


def _short(state: State) -> str:
    if state is None:
        return "absent"
    return f"step {state[0][0]:.0f}"
