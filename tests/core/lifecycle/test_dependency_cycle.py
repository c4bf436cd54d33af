"""Cycles in the graph of models that need others: found, shortest, and only through the
model asked about."""

from __future__ import annotations

from collections.abc import Callable

from serval.core.lifecycle.record import dependency_cycle, waiting_reason


def needs(graph: dict[str, tuple[str, ...]]) -> Callable[[str], tuple[str, ...]]:
    return lambda name: graph.get(name, ())


def test_two_models_that_need_each_other_are_a_cycle() -> None:
    graph = needs({"a": ("b",), "b": ("a",)})
    assert dependency_cycle("a", graph) == ("a", "b", "a")
    assert dependency_cycle("b", graph) == ("b", "a", "b")


def test_the_shortest_cycle_is_named() -> None:
    graph = needs({"a": ("b", "c"), "b": ("d",), "d": ("a",), "c": ("a",)})
    assert dependency_cycle("a", graph) == ("a", "c", "a")


def test_no_cycle_through_the_model_is_none() -> None:
    # b and c need each other, but a only needs them: a waits, it is in no cycle.
    graph = needs({"a": ("b",), "b": ("c",), "c": ("b",), "x": ()})
    assert dependency_cycle("a", graph) == ()
    assert dependency_cycle("x", graph) == ()
    assert dependency_cycle("unknown", graph) == ()


def test_the_waiting_reason_names_the_cycle() -> None:
    assert waiting_reason(("b",)) == "waiting for model 'b' to be available (a dependency)"
    assert waiting_reason(("b",), None, ("a", "b", "a")) == (
        "waiting for model 'b' to be available (a dependency); but models a -> b -> a need "
        "each other in a cycle, so none of them can load: remove one of the calls"
    )
    # Every model it needs is available (an edit closed the cycle while they served).
    assert waiting_reason((), None, ("a", "b", "a")) == (
        "models a -> b -> a need each other in a cycle, so none of them can load: remove one of "
        "the calls"
    )
