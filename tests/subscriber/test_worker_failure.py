"""A bug while applying (not a bad record: those are dead letters) stops the worker; nothing past it is committed."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from subscriber_kit import Broker, person_change, subscriber_config

from connectors.sinks import Change, Result
from services.subscriber import FaustSubscriber, Subscriber


class _BuggySink:
    """A store adapter with a bug in it. No real store can be made to raise an arbitrary exception on demand, so
    this stands in for one; everything else (broker, group, commits) is real."""

    def __init__(self) -> None:
        self.calls = 0

    def open(self) -> None:
        pass

    def apply(self, changes: Sequence[Change], stop: threading.Event | None = None) -> list[Result]:
        self.calls += 1
        raise ZeroDivisionError("a bug in the sink")

    def close(self) -> None:
        pass


def test_a_bug_while_applying_stops_the_worker_and_commits_nothing(
    sqlite_store: str, broker: Broker, engine: str
) -> None:
    broker.publish([person_change(f"P{p}", 1, "c") for p in range(5)])
    sink = _BuggySink()
    host = FaustSubscriber if engine == "faust" else Subscriber
    worker = host(subscriber_config(sqlite_store, engine=engine), broker.settings, broker.codec, sink=sink)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(threading.Event())  # never asked to stop: only the failure may end it
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the worker went on after a bug instead of stopping"
    assert [type(e) for e in failure] == [ZeroDivisionError]
    assert sink.calls == 1, "the batch that failed was retried or skipped past"
    assert broker.committed() == 0
    assert worker.stats["applied"] == 0
