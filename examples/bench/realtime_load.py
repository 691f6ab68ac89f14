#!/usr/bin/env python3
"""Posts `order_placed` events to one or more tidings daemons at a steady rate, then reads
each daemon's `tidings_event_to_handoff_seconds` histogram (event accepted -> SMTP server
accepted the email) and prints the merged percentiles, as bucket upper bounds.

    realtime_load.py RATE SECONDS CUSTOMERS TOKEN PORT [PORT ...]

Events go to the daemons in turn; each is its own HTTP/1.1 request (as a shop's backend
sends them), from a pool of threads so that a slow answer does not hold the schedule up.
"""
import http.client
import json
import sys
import threading
import time


def post(port, token, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/v1/events",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def histogram(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    buckets, count = {}, 0
    for line in text.splitlines():
        if line.startswith('tidings_event_to_handoff_seconds_bucket{le="'):
            bound = line.split('"')[1]
            buckets[bound] = int(line.rsplit(" ", 1)[1])
        elif line.startswith("tidings_event_to_handoff_seconds_count "):
            count = int(line.rsplit(" ", 1)[1])
    return buckets, count


def main():
    rate, seconds, customers, token = (
        float(sys.argv[1]),
        float(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[4],
    )
    ports = [int(p) for p in sys.argv[5:]]
    total = int(rate * seconds)
    failures = []
    started = time.monotonic()
    threads = []
    for i in range(total):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = json.dumps(
            {
                "customer_id": f"c{i % customers:07d}",
                "name": "order_placed",
                "properties": {"order_id": f"o{i}"},
            }
        )
        port = ports[i % len(ports)]

        def send(port=port, body=body):
            try:
                status = post(port, token, body)
                if status != 200:
                    failures.append(status)
            except Exception as e:  # noqa: BLE001 - counted and reported
                failures.append(str(e))

        t = threading.Thread(target=send)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    sent_for = time.monotonic() - started
    # Wait until every event's email is counted (or 30 s pass).
    deadline = time.monotonic() + 30
    while True:
        merged, count = {}, 0
        for port in ports:
            buckets, n = histogram(port)
            count += n
            for bound, value in buckets.items():
                merged[bound] = merged.get(bound, 0) + value
        if count >= total - len(failures) or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    def percentile(q):
        need = q * count
        for bound, value in sorted(
            ((b, v) for b, v in merged.items() if b != "+Inf"), key=lambda x: float(x[0])
        ):
            if value >= need:
                return f"<= {bound} s"
        return "> 60 s"

    print(
        f"{total} events at {rate:g}/s over {sent_for:.1f} s to {len(ports)} daemon(s); "
        f"{len(failures)} refused; {count} emails measured; "
        f"p50 {percentile(0.5)}, p99 {percentile(0.99)}"
    )
    print("buckets (cumulative): " + ", ".join(f"le {b}: {v}" for b, v in sorted(merged.items(), key=lambda x: float(x[0]) if x[0] != "+Inf" else 1e9)))


if __name__ == "__main__":
    main()
