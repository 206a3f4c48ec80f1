"""Eventlet set-up for worker processes; import this first in a worker's entry module.

Patches the standard library and switches psycopg to its cooperative wait, so concurrent
queries in one worker overlap instead of blocking the hub in turn.
"""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet announces its own deprecation
    import eventlet

eventlet.monkey_patch()

from ontrackio.core.db.cooperative import use_cooperative_wait  # noqa: E402

use_cooperative_wait()
