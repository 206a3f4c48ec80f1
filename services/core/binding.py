"""Binds a worker class to its service's contract: one nameko entrypoint per subscription.

A worker marks its handler methods with how they handle an event (`worker.on`,
`worker.applies`, both through `handles`); its service's contract says which events they
receive (core/contract.py). `bind` builds the nameko service class with one event
entrypoint per subscription, named after the subscription's handler (nameko names the
queue after it, exactly as core/topology.py declares it). A marked method without a
contract entry, or a contract entry without a marked method, is refused.
"""

from __future__ import annotations

import types
from collections.abc import Callable

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from ontrackio.core.contract import ContractError, Deployment, Subscription

# The attribute `handles` sets: the entrypoint decorator factory, called (source, event).
KIND_ATTR = "__ontrack_entrypoint__"


def handles(kind: Callable[[str, str], Callable]):
    """Mark a handler method; `kind(source, event)` is the nameko entrypoint decorator
    that `bind` applies for each subscription the method implements."""

    def mark(fn):
        setattr(fn, KIND_ATTR, kind)
        return fn

    return mark


def handlers(worker_cls: type) -> dict[str, Callable]:
    """The marked handler methods of a worker class (inherited ones included), by name."""
    return {
        name: getattr(worker_cls, name)
        for name in dir(worker_cls)
        if callable(getattr(worker_cls, name, None))
        and getattr(getattr(worker_cls, name), KIND_ATTR, None) is not None
    }


def mismatches(worker_cls: type, subscriptions: list[Subscription]) -> list[str]:
    """What does not fit between a worker class and its subscriptions (empty: it fits)."""
    marked = handlers(worker_cls)
    used = {sub.method for sub in subscriptions}
    return [
        *(
            f"{worker_cls.__name__}.{m} handles no event of the contract"
            for m in sorted(marked)
            if m not in used
        ),
        *(
            f"the contract's {s.handler} ({s.event_type}) has no handler {s.method} in "
            f"{worker_cls.__name__}"
            for s in subscriptions
            if s.method not in marked
        ),
    ]


def bind(worker_cls: type, deployment: Deployment) -> type:
    """The nameko service class of `worker_cls` (its `name` is its service), with one event
    entrypoint per subscription of its contract; ContractError if they do not fit."""
    subscriptions = deployment.subscriptions_of(deployment.contract(worker_cls.name).service)
    problems = mismatches(worker_cls, subscriptions)
    if problems:
        raise ContractError("; ".join(problems))
    marked = handlers(worker_cls)
    attrs = {}
    for sub in subscriptions:
        method = marked[sub.method]
        kind = getattr(method, KIND_ATTR)
        attrs[sub.handler] = kind(sub.source, sub.event)(_fresh(method, sub.handler))
    attrs["__module__"] = worker_cls.__module__
    return type(worker_cls.__name__, (worker_cls,), attrs)


def _fresh(fn: Callable, name: str) -> Callable:
    """A copy of `fn` named `name`, carrying no entrypoint (nameko registers entrypoints
    on the function object, so each subscription needs its own)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__.rsplit(".", 1)[0] + "." + name
    copy.__doc__ = fn.__doc__
    copy.__module__ = fn.__module__
    skip = {ENTRYPOINT_EXTENSIONS_ATTR, KIND_ATTR}
    copy.__dict__.update({k: v for k, v in fn.__dict__.items() if k not in skip})
    return copy
