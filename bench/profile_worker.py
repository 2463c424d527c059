"""Profile a Tollgate worker under load with py-spy; print the top functions as text.

Same layout as bench/proxy.py case (c): worker on core 0, wrk + nginx backend on core 1.  While
wrk runs, ``py-spy record --format raw`` samples the worker; the collapsed stacks are summarised
here into the functions with the most *self* samples and the most *total* (inclusive) samples,
and written to bench/results/profile-<timestamp>.txt (plus the raw stacks next to it, loadable
in speedscope or flamegraph.pl).  py-spy is installed into the venv when missing.

    .venv/bin/python bench/profile_worker.py [--duration 10] [--connections 50] [--top 25] [--native]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    LOAD_CORE,
    RESULTS,
    Procs,
    backend_conf,
    ensure_py_spy,
    ensure_tools,
    free_port,
    http_get,
    install_signal_handlers,
    log,
    run_wrk,
    start_nginx,
)
from proxy import CASES, Env, start_worker


def summarise(raw: Path, top: int) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed ("raw") stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_short(f) for f in stack.split(";")]
        # Skip the process/thread label py-spy puts first.
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_counts[frames[-1]] += n
        for f in set(frames):
            total_counts[f] += n
    out = [f"{samples} samples", "", f"top {top} by self time:"]
    out += [f"  {100 * c / samples:5.1f}%  {f}" for f, c in self_counts.most_common(top)]
    # Frames on (nearly) every stack are the process's entry (runpy, typer, asyncio.run): noise.
    inclusive = [(f, c) for f, c in total_counts.most_common() if c < 0.95 * samples][:top]
    out += ["", f"top {top} by total (inclusive) time, entry frames left out:"]
    out += [f"  {100 * c / samples:5.1f}%  {f}" for f, c in inclusive]
    return "\n".join(out)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"; line numbers would split one function.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{name} ({short})" if where else name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--case", default="c", help="bench/proxy.py case to profile (default c)")
    p.add_argument("--native", action="store_true", help="include native (C) frames")
    args = p.parse_args()
    install_signal_handlers()
    tools = ensure_tools()
    py_spy = ensure_py_spy()
    case = next(c for c in CASES if c.key == args.case)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"profile-{stamp}.raw.txt"
    with tempfile.TemporaryDirectory(prefix="tollgate-profile-") as tmp:
        procs = Procs(Path(tmp))
        try:
            ports = (free_port(), free_port())
            env = Env(backend_ports=ports, workdir=Path(tmp))
            start_nginx(procs, tools["nginx"], "backend", backend_conf(env.workdir, ports), ports[1], core=LOAD_CORE)
            worker, port = start_worker(procs, env, case)
            assert http_get(port, case.path, headers=case.headers)[0] == 200
            url = f"http://127.0.0.1:{port}{case.path}"
            run_wrk(tools["wrk"], env.workdir, url, seconds=2, connections=args.connections, headers=case.headers)
            spy = [py_spy, "record", "--pid", str(worker.pid), "--format", "raw", "-o", str(raw), "--rate", "250"]
            spy += ["--duration", str(int(args.duration))]
            # --nonblocking does not pause the worker per sample (less distortion); py-spy cannot
            # unwind native frames without pausing, so --native samples in blocking mode.
            spy.append("--native" if args.native else "--nonblocking")
            holder: list[subprocess.Popen[bytes]] = []

            def start_spy() -> None:
                holder.append(procs.start("py-spy", spy))

            res = run_wrk(
                tools["wrk"],
                env.workdir,
                url,
                seconds=args.duration + 1,
                connections=args.connections,
                headers=case.headers,
                on_start=start_spy,
            )
            holder[0].wait(timeout=args.duration + 30)
            if not raw.exists():
                raise RuntimeError(f"py-spy wrote nothing:\n{procs.log_tail('py-spy')}")
        except KeyboardInterrupt:
            return 130
        finally:
            procs.stop_all()
    text = f"case {case.key} ({case.title}): {res.rps:.0f} req/s under py-spy (sampling slows it)\n"
    text += summarise(raw, args.top)
    summary = RESULTS / f"profile-{stamp}.txt"
    summary.write_text(text + "\n")
    log(text)
    log(f"\nwrote {summary.relative_to(RESULTS.parents[1])} and {raw.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
