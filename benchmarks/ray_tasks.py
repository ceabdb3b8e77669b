"""Ray's task throughput on this machine: the anchor bench_scale.py prints beside tokenweave's.

    python benchmarks/ray_tasks.py [--tasks N]   (a Python with `ray`: make bench-scale's .venv-ray)

Tasks that do nothing, on a local Ray with this machine's CPUs: synchronous (each submitted
and awaited before the next) and asynchronous (all submitted, then all awaited). Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import ray


@ray.remote
def nothing() -> int:
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        ray.get([nothing.remote() for _ in range(200)])  # workers up
        synchronous = max(args.tasks // 10, 100)
        started = time.perf_counter()
        for _ in range(synchronous):
            ray.get(nothing.remote())
        sync_s = time.perf_counter() - started
        started = time.perf_counter()
        ray.get([nothing.remote() for _ in range(args.tasks)])
        async_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    print(
        json.dumps(
            {
                "version": ray.__version__,
                "sync_per_s": synchronous / sync_s,
                "async_per_s": args.tasks / async_s,
            }
        )
    )


if __name__ == "__main__":
    main()
