"""The service's encrypted-matching kernel alone: ``score_and_mask`` on a real gallery.

Builds one random unit-vector gallery of n × d, then times ``_kernels.score_and_mask``
(multiply-accumulate, masking, rerandomisation, NTT-order output) on random residues for
the probe, mask material and public key (its speed does not depend on their values),
with fresh rotations and order per call, as a query has. For each numba thread count it
prints the minimum and median over ``--repeat`` calls (on a shared machine the minimum
is the better estimate) and the gallery bytes streamed per second at the minimum::

    .venv/bin/python -m bench.he_kernel --n 100000 --d 128 --repeat 21 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import numpy.typing as npt


def _residues(
    rng: np.random.Generator, shape: tuple[int, ...], q: npt.NDArray[np.uint64], axis: int
) -> npt.NDArray[np.uint32]:
    """Uniform residues < q[p] along ``axis`` (the prime axis)."""
    qs = q.reshape(tuple(len(q) if i == axis else 1 for i in range(len(shape))))
    words = rng.integers(0, 1 << 62, size=shape, dtype=np.uint64)
    return (words % qs).astype(np.uint32)


def run(n: int, d: int, repeat: int, threads: list[int], params_name: str) -> dict[str, object]:
    import numba

    from crypto.he import Gallery, get_parameter_set
    from crypto.he._seal import backend
    from crypto.he._specs import FusedScore, Primes, QueryLayout

    params = get_parameter_set(params_name)
    be = backend(params)
    rng = np.random.default_rng(n * 1000 + d)
    templates = rng.standard_normal((n, d)).astype(np.float32)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    gallery = Gallery.build(templates, params)
    q = np.asarray(be.q, dtype=np.uint64)
    k, nn, s = be.k, be.n, params.slots
    diag = int(gallery.diagonals.shape[4])
    count = gallery.ciphertexts
    probe = _residues(rng, (diag, 2, k, nn), q, 2)
    masks = _residues(rng, (count, 3, k, nn), q, 2)
    pk = _residues(rng, (2, k, nn), q, 1)
    tau = rng.integers(0, 1 << 62, size=k, dtype=np.uint64) % q
    primes = Primes.of(q)
    out = np.empty((count, 2, k, nn), dtype=np.uint32)

    def call(seed: int) -> None:
        r = np.random.default_rng(seed)
        rotations = r.integers(0, s, size=count).astype(np.int64)
        order = r.permutation(count).astype(np.int64)
        FusedScore(
            diagonals=gallery.diagonals,
            pad=gallery.pad_bias,
            probe=probe,
            tau=tau,
            masks=masks,
            pk=pk,
            layout=QueryLayout.of(rotations, order, s),
            primes=primes,
            to_ntt=be.slot_to_ntt,
            out=out,
        ).run()

    call(0)  # compile / load from cache
    result: dict[str, object] = {
        "bench": "he_kernel",
        "params": params.name,
        "n": n,
        "d": d,
        "gallery_mb": round(gallery.nbytes / 1e6, 1),
        "repeat": repeat,
    }
    for t in threads:
        numba.set_num_threads(t)
        times = []
        for i in range(repeat):
            t0 = time.perf_counter()
            call(i + 1)
            times.append((time.perf_counter() - t0) * 1e3)
        best = min(times)
        result[f"threads_{t}"] = {
            "min_ms": round(best, 2),
            "median_ms": round(statistics.median(times), 2),
            "gallery_gb_per_s_at_min": round(gallery.diagonals.nbytes / best / 1e6, 1),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    parser.add_argument("--d", type=int, nargs="+", default=[128])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--params", default="ckks-v1")
    args = parser.parse_args(argv)
    for d in args.d:
        for n in args.n:
            row = run(n, d, args.repeat, args.threads, args.params)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
