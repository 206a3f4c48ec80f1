"""The consumer of the bare kombu baseline, run in its own process by bench.events.

    python -m bench.bare_consumer AMQP_URL QUEUE COUNT

Declares QUEUE bound to the topic exchange "bench.events" (durable, like the platform's),
prints "ready", consumes COUNT messages acknowledging each one (prefetch 10, like a
worker's max_workers), then prints one JSON line: receive times and send→receive latencies.
"""

from __future__ import annotations

import json
import sys
import time

import kombu
from kombu import Exchange, Queue

EXCHANGE = Exchange("bench.events", type="topic", durable=True)


def main() -> None:
    url, queue_name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    latencies: list[float] = []
    first = last = 0.0
    with kombu.Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 10, False)
        queue = Queue(queue_name, EXCHANGE, routing_key="bench.#", durable=True)(channel)
        queue.declare()

        def on_message(body, message):
            nonlocal first, last
            now = time.time()
            first = first or now
            last = now
            latencies.append(now - body["t"])
            message.ack()

        with kombu.Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
            print("ready", flush=True)
            deadline = time.monotonic() + 300
            while len(latencies) < count and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
        queue.delete()
    print(json.dumps({"first": first, "last": last, "latencies": latencies}), flush=True)


if __name__ == "__main__":
    main()
