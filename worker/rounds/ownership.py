"""Ownership: which watched threads this replica polls when replicas share them.

A thread every replica knows (``ThreadState.shared``: the configured ones, and those in a
shared watch store) is polled by its owner among the live replicas (``service.membership``: rendezvous hashing over a Redis
membership set). A thread that comes due and is another replica's is set aside without a
request, and looked at again when the members change: if it is ours then, at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.rounds.schedule import ThreadState
    from worker.service.membership import Membership

__all__ = ["Ownership"]


class Ownership:
    """The poller's view of who polls what; without a membership, this replica polls all."""

    def __init__(self, membership: Membership | None, watches: dict[str, ThreadState],
                 unsettled: set[str], schedule: Callable[[ThreadState, float], None], *,
                 store_shared: bool = True) -> None:
        """``watches``, ``unsettled`` and ``schedule`` are the poller's own; ``store_shared``:
        the watch store is Redis too (``[watch] store`` auto or redis), so every replica
        follows what any of them stored."""
        self._membership = membership
        self._store_shared = store_shared
        self._watches = watches
        self._unsettled = unsettled
        self._schedule = schedule
        self._set_aside: set[str] = set()  # came due while another replica's
        if membership is not None:
            membership.on_change(self._owners_changed)

    @property
    def shared(self) -> bool:
        """Threads known to every replica are divided among them."""
        return self._membership is not None and self._membership.shared

    @property
    def from_store(self) -> bool:
        """Threads loaded from the watch store (or discovered and stored) are known to every
        replica: divided among them, like the configured ones."""
        return self.shared and self._store_shared

    @property
    def set_aside(self) -> int:
        """How many threads came due while another replica's, and wait for a change."""
        return len(self._set_aside)

    def ours(self, state: ThreadState) -> bool:
        """Whether this replica polls the thread now.

        Threads only this replica knows (announced here, discovered here) are always its own;
        so is an announced thread until its first look, so that the replica that took the
        announcement answers it at once. Shared threads belong to their owner.
        """
        if self._membership is None or state.announced or not state.shared:
            return True
        return self._membership.owns(state.thread_id)

    def lookup(self, thread_id: str) -> ThreadState | None:
        """The thread's state if it is ours to poll; None (set aside) if it is not."""
        state = self._watches.get(thread_id)
        if state is None or self.ours(state):
            return state
        self._set_aside.add(thread_id)
        self._unsettled.discard(thread_id)  # another replica's: nothing left to do here
        return None

    def stop(self) -> None:
        """This replica drains: the others take its threads over now."""
        if self._membership is not None:
            self._membership.stop_owning()

    def _owners_changed(self) -> None:
        for thread_id in list(self._set_aside):
            state = self._watches.get(thread_id)
            if state is None:
                self._set_aside.discard(thread_id)
            elif self.ours(state):
                self._set_aside.discard(thread_id)
                if not state.busy:
                    self._unsettled.add(thread_id)
                    self._schedule(state, 0.0)
