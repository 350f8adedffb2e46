#!/usr/bin/env python3
"""Measure remote-agent against its speed targets, with the fake ngrok agent from tests/.

Every timing is the median of several rounds in one run. Within a round the compared
things run one after the other (a bare `jupyter notebook` loading the same server extensions,
then a cold serve; `python -c pass`, then a warm serve, `url` and `status`), so drift in the
machine's load hits them alike, and each is also given as a ratio to its same-round baseline.
The package is byte-compiled first, as `pip install` does (an environment with
PYTHONDONTWRITEBYTECODE would otherwise compile it again in every command measured).

    .venv/bin/python scripts/benchmark.py            # the full run (about 3 minutes)
    .venv/bin/python scripts/benchmark.py --quick    # one run of each, a 2 s rest: a smoke test
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import PASSWORD, Sandbox, wait_until  # noqa: E402 (the harness lives with the tests)
from fakeagent import FakeNgrok  # noqa: E402
from jupyter_client import JupyterClient  # noqa: E402

NEW_URL = r"(?:New public URL|Tunnel back at the same URL)\s+(\S+)"  # today: usually the same URL


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: float
    baseline: float | None = None  # the same-run baseline, for a ratio

    @property
    def met(self) -> bool:
        return self.value <= self.target

    def row(self) -> str:
        ratio = f"{self.value / self.baseline:.2f}x" if self.baseline else ""
        shown = f"{self.value:.3f} {self.unit}" if self.unit == "s" else f"{self.value:.2f} {self.unit}"
        verdict = "ok" if self.met else "MISSED"
        return f"| {self.name} | {shown} | {ratio} | {self.target:g} {self.unit} | {verdict} |"


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    with tempfile.TemporaryDirectory(prefix="ra-bench-") as tmp:
        root = Path(tmp)
        box = Sandbox(root, FakeNgrok(root / "ngrok"))
        try:
            yield box
        finally:
            box.cleanup()


def as_the_readme_sets_up(box: Sandbox) -> dict[str, str | None]:
    """Token and password in the project's .env (mode 0600), not in the shell's environment."""
    env_file = box.notebooks / ".env"
    env_file.write_text(f"NGROK_AUTHTOKEN={box.env['NGROK_AUTHTOKEN']}\nJUPYTER_PASSWORD={PASSWORD}\n")
    env_file.chmod(0o600)
    return {"NGROK_AUTHTOKEN": None, "JUPYTER_PASSWORD": None}


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise SystemExit(f"benchmark: {result.args} failed ({result.returncode}):\n{result.stderr}")
    return result


def bare_jupyter_start(box: Sandbox) -> float:
    """A plain `jupyter notebook` until it answers: what serve is compared with."""
    # Literally what the tutorials have users type: the environment's `jupyter` launcher.
    argv = [
        str(Path(sys.executable).with_name("jupyter")),
        "notebook",
        "--no-browser",
        f"--ServerApp.port={box.port}",
        "--ServerApp.ip=127.0.0.1",
        # The server extensions serve loads: jupyter-collaboration and jupyter-server-nbmodel are
        # enabled by their install in this environment; remote-agent's own is named here.
        "--ServerApp.jpserver_extensions=remote_agent.jupyter.notebook_status=True",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # as serve does; Jupyter refuses root otherwise
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=box.environ(), cwd=box.notebooks, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: JupyterClient(f"http://127.0.0.1:{box.port}/").get_ok("/api"), 120, "Jupyter")
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(30)


def cold_start_round() -> tuple[float, float, float]:
    """(bare Jupyter, cold serve, the warm serve right after it) in one home, where serve ran on an
    earlier day and was stopped."""
    with sandbox() as box:
        env = as_the_readme_sets_up(box)
        check(box.run("serve", "--detach", env=env))
        check(box.run("stop", env=env))
        bare = bare_jupyter_start(box)
        start = time.perf_counter()
        result = check(box.run("serve", "--detach", env=env))
        url = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("Public URL"))
        wait_until(lambda: JupyterClient(url).get_ok("/api"), 30, "the public URL")
        cold = time.perf_counter() - start
        # A user who reconnects at once: Jupyter is still settling (its language-server scan, ...).
        warm_after = timed(lambda: check(box.run("serve", "--detach", env=env)))
        return bare, cold, warm_after


def median(values: list[float]) -> float:
    return statistics.median(values)


def quick_rounds(runs: int, quick: bool) -> int:
    """Rounds of the quick commands: they take milliseconds, so more rounds than of the cold start."""
    return 3 if quick else max(7, runs)


def python_start() -> float:
    return timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))


def cold_figures(runs: int) -> tuple[list[Figure], list[float]]:
    """The cold start against bare Jupyter; and the warm serves right after each cold one."""
    bare, cold, ratios, warm_after = [], [], [], []
    for _ in range(runs):  # bare and serve alternate, so drift in the machine's load hits both alike
        one_bare, one_cold, one_warm = cold_start_round()
        bare.append(one_bare)
        cold.append(one_cold)
        ratios.append(one_cold / one_bare)
        warm_after.append(one_warm)
    return [
        Figure("cold `serve --detach` / bare `jupyter notebook`", median(ratios), "ratio", 1.00),
        Figure("cold `serve --detach` (seconds)", median(cold), "s", float("inf"), median(bare)),
    ], warm_after


def quick_figures(box: Sandbox, env: dict[str, str | None], rounds: int, warm_after: list[float]) -> list[Figure]:
    """Warm serve, url and status on a running session, each round after a bare interpreter start."""
    baseline: list[float] = []
    taken: dict[str, list[float]] = {"warm": [], "url": [], "status": []}
    for _ in range(rounds):
        baseline.append(python_start())
        taken["warm"].append(timed(lambda: check(box.run("serve", "--detach", env=env))))
        taken["url"].append(timed(lambda: check(box.run("url", env=env))))
        taken["status"].append(timed(lambda: check(box.run("status", env=env))))
    python = median(baseline)
    return [
        Figure("warm `serve --detach`", median(taken["warm"]), "s", 0.05, python),
        Figure("warm `serve --detach` right after a cold one", median(warm_after), "s", 0.05, python),
        Figure("`url`", median(taken["url"]), "s", 0.05, python),
        Figure("`status`", median(taken["status"]), "s", 0.05, python),
    ]


def measure(runs: int, rest_seconds: float, quick: bool = False) -> list[Figure]:
    compileall.compile_dir(REPO / "remote_agent", quiet=1)
    figures, warm_after = cold_figures(runs)

    with sandbox() as box:
        env = as_the_readme_sets_up(box)  # the password in .env: its check is remembered between serves
        serve = box.follow(**env)
        serve.wait_for(r"Public URL\s+(\S+)", timeout=90)
        figures.extend(quick_figures(box, env, quick_rounds(runs, quick), warm_after))

        deaths = []
        for _ in range(1 if quick else max(5, runs)):
            seen = len(serve.lines)
            os.kill(box.tunnel_state()["agent_pid"], signal.SIGKILL)
            start = time.perf_counter()
            url = serve.wait_for(NEW_URL, timeout=30, start=seen)[1]
            deaths.append(time.perf_counter() - start)
            if check(box.run("url")).stdout.strip() != url:
                raise SystemExit("benchmark: `url` does not give the URL serve printed")
        figures.append(Figure("agent killed -> new URL printed (and given by `url`)", median(deaths), "s", 0.5))

        hangs = []
        for _ in range(1 if quick else max(3, runs)):
            seen = len(serve.lines)
            os.kill(box.tunnel_state()["agent_pid"], signal.SIGSTOP)
            start = time.perf_counter()
            serve.wait_for(NEW_URL, timeout=30, start=seen)
            hangs.append(time.perf_counter() - start)
        figures.append(Figure("hung agent (SIGSTOP) -> replaced", median(hangs), "s", 5.0))

        keeper = box.tunnel_state()["keeper_pid"]
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu_seconds() -> float:
            fields = Path(f"/proc/{keeper}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        before, start = cpu_seconds(), time.perf_counter()
        time.sleep(rest_seconds)  # the keeper at rest is what is measured: nothing may happen meanwhile
        used = cpu_seconds() - before
        share = 100 * used / (time.perf_counter() - start)
        figures.append(Figure(f"keeper at rest, CPU over {rest_seconds:g} s", share, "% of a core", 0.1))
        rss_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{keeper}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        figures.append(Figure("keeper at rest, resident memory", rss_kb / 1024, "MB", 30))
        figures.extend(self_healing(box, 1 if quick else max(3, runs)))
    return figures


def self_healing(box: Sandbox, runs: int) -> list[Figure]:
    """kill -9 of the keeper, then of Jupyter: how soon each is back, without a serve."""
    from remote_agent.jupyter.running import answers
    from remote_agent.supervision.supervisor import POLICY

    keepers = []
    runs = min(runs, 3)  # the restart policy allows a few in a row (4 in 5 min), not more
    for run in range(runs):
        if run:
            time.sleep(POLICY.startsecs)
        keeper = box.tunnel_state()["keeper_pid"]
        os.kill(keeper, signal.SIGKILL)
        start = time.perf_counter()
        wait_until(
            lambda k=keeper: (
                box.tunnel_state().get("keeper_pid") not in (None, k) and box.tunnel_state().get("status") == "up"
            ),
            60,
            "a new keeper with the tunnel up",
            interval=0.01,
        )
        keepers.append(time.perf_counter() - start)
    jupyters = []
    for run in range(runs):
        if run:
            # A Jupyter that had run a while (as one the OOM killer ends): the policy's usual delay.
            time.sleep(POLICY.startsecs)
        killed = box.jupyter_record()["pid"]
        os.kill(killed, signal.SIGKILL)
        start = time.perf_counter()
        wait_until(
            lambda k=killed: box.jupyter_record().get("pid") != k and answers(box.port, timeout=0.2),
            90,
            "Jupyter to answer again",
            interval=0.01,
        )
        jupyters.append(time.perf_counter() - start)
    return [
        Figure("keeper killed -> a new keeper has the tunnel up", median(keepers), "s", 10.0),
        Figure("Jupyter killed -> answering again (restarted)", median(jupyters), "s", 15.0),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each timing (median; default 5)")
    parser.add_argument("--rest-seconds", type=float, default=60.0, help="how long the keeper is watched at rest")
    parser.add_argument("--quick", action="store_true", help="one run each and a 2 s rest: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    runs, rest = (1, 2.0) if args.quick else (args.runs, args.rest_seconds)
    figures = measure(runs, rest, args.quick)
    if args.json:
        print(json.dumps([{**f.__dict__, "met": f.met} for f in figures], indent=2))
    else:
        print("| figure | median | vs baseline | target | |")
        print("|---|---|---|---|---|")
        for figure in figures:
            print(figure.row())
        print(
            f"\nMedians of {runs} alternating round(s) (of the quick commands: {quick_rounds(runs, args.quick)}); "
            "baselines from the same rounds: bare `jupyter notebook` start, `python -c pass`."
        )
    return 0 if all(f.met for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
