"""The life of a round: found by the poller, dispatched to handlers, submitted once.

Schedule, pipeline, dispatch, submission, cancellation, approvals and scope. May import the
service's shared state (claims, status board), handlers, api and everything below.
"""

__all__: list[str] = []
