"""Developer sessions. `nox -s tests` is what CI runs (.ci/run) and the README's test command."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import re
import time
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")


def machine_name() -> str:
    """System, architecture, cores and a hash of the CPU's model and feature flags: machines that
    share a name but not their CPU kernels (AVX2 vs AVX-512: 10x apart here) never compare."""
    spec = importlib.util.spec_from_file_location("cpu_info", Path(__file__).parent / "core" / "fast" / "cpu_info.py")
    cpu_info = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_info)  # standard library only: no torch in nox's own environment
    digest = hashlib.sha256(cpu_info.cpu_description().encode()).hexdigest()[:8]
    return f"{platform.system()}-{platform.machine()}-{os.cpu_count()}cpu-{digest}"


def install_project(session: nox.Session, extras: str = "test") -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests of core and harness (pass pytest args after --)."""
    install_project(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(default=False)
def faults(session: nox.Session) -> None:
    """The fault suite alone (tests marked `faults`: real processes, files and signals; also part of
    `tests`). Its disk-full cases mount a small tmpfs, which needs root: elsewhere they are skipped,
    and pytest's summary says so (-ra)."""
    install_project(session)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        session.warn("not root: the disk-full cases (a small tmpfs) will be skipped, not run")
    session.run("python", "-m", "pytest", "tests", "-m", "faults", "-ra", *session.posargs)


@nox.session(default=False)
def benchmarks(session: nox.Session) -> None:
    """Benchmarks: saves each run per machine and fails on a mean regression over 10 %
    against the last saved run of the same machine (first run: nothing to compare)."""
    install_project(session)
    machine = machine_name()
    storage = f"file://.benchmarks/{machine}"
    args = ["--benchmark-autosave", f"--benchmark-storage={storage}", "--benchmark-columns=mean,stddev,rounds"]
    if list(Path(".benchmarks", machine).glob("*/*.json")):
        args += ["--benchmark-compare", "--benchmark-compare-fail=mean:10%"]
    session.run("python", "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", *args, *session.posargs)


@nox.session(default=False)
def scenarios(session: nox.Session) -> None:
    """Every scenario at full scale: runs/<name>.h5 with a report (runs/<name>_report/), a verdict
    per expectation, runs/summary.json.

    Long: the seed scenarios are minutes on a GPU or an AVX-512 CPU, hours on a 2-core AVX2-only
    CPU. Pass pytest args after --, e.g. `nox -s scenarios -- -k flannel_7 --device cuda`; on an
    AVX2-only CPU, `-- --set train.matmul=fp32` (float32 GEMMs, opt-in, not bit-identical) is
    ~1.5x faster (docs/performance.md).
    """
    install_project(session)
    session.run("python", "-m", "pytest", "scenarios", "--scale", "full", "--runs-dir", "runs", "--report", "-p",
                "no:cacheprovider", "-rA", *session.posargs)


MUTANT_STATUSES = ("killed", "survived", "timeout", "suspicious", "segfault", "no tests", "skipped", "not checked")
KILLED = ("killed", "timeout", "segfault")  # what the kill rate counts as killed


@nox.session(default=False)
def mutants(session: nox.Session) -> None:
    """Mutation testing of the numeric core (step, optimizer, loss, data order, recorder write path)
    and harness/checks with mutmut ([tool.mutmut] in pyproject.toml: the modules, the fast tests
    that guard them). Writes mutants/report.md: mutants, kill rate per module, each survivor's diff
    with its answer from docs/mutants.md, or marked new (kill it with a test, or answer it there).
    Results are cached in mutants/ (git-ignored); `rm -rf mutants` starts afresh. Pass mutant name
    globs after --, e.g. `nox -s mutants -- "core.data*"`. docs/testing.md: the last full run."""
    install_project(session, "test,mutants")
    if forget_stale_test_map():
        session.log("tests changed since mutmut mapped them to functions: mapping them again (a minute or two)")
    started = time.monotonic()
    session.run("nice", "-n", "10", "mutmut", "run", "--max-children", str(os.cpu_count() or 1), *session.posargs,
                external=True)
    listing = session.run("mutmut", "results", "--all", "true", silent=True)
    if listing is None:  # nox --install-only: nothing ran
        return
    results = [line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line and "__mutmut_" in line]
    diffs = {name: session.run("mutmut", "show", name, silent=True) for name, status in results
             if status not in (*KILLED, "not checked")}
    answers = known_answers()
    report = mutants_report(results, diffs, time.monotonic() - started, answers)
    Path("mutants", "report.md").write_text(report, encoding="utf-8")
    new = sorted(set(diffs) - set(answers))
    if new:
        session.warn(f"{len(new)} mutants not killed and not answered in docs/mutants.md: {', '.join(new[:5])}"
                     + (" ..." if len(new) > 5 else ""))
    session.log("mutants/report.md written")


def forget_stale_test_map(tests: Path = Path("tests"), mutants_dir: Path = Path("mutants")) -> bool:
    """Delete mutmut's map of which tests reach which function (its results stay) when the test files
    changed since it was made; True if deleted. mutmut maps only tests it has not seen: a changed
    test that now reaches a function would not run for that function's mutants, whose survival
    would then be false. A stamp beside the map holds the hash of the tests it was made from."""
    digest = hashlib.sha256()
    for path in sorted(tests.rglob("*.py")):
        digest.update(path.relative_to(tests).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    test_map, stamp = mutants_dir / "mutmut-stats.json", mutants_dir / "tests.sha256"
    stale = test_map.is_file() and (not stamp.is_file() or stamp.read_text() != digest.hexdigest())
    if stale:
        test_map.unlink()
    if mutants_dir.is_dir():
        stamp.write_text(digest.hexdigest())  # the map mutmut makes next is made from these tests
    return stale


def known_answers(page: Path = Path("docs", "mutants.md")) -> dict[str, str]:
    """{mutant: answer} from the survivors' table of docs/mutants.md (rows "| `name` | verdict | answer |")."""
    if not page.is_file():
        return {}
    return dict(re.findall(r"^\| `([^`]+)` \| [^|]+ \| (.+) \|$", page.read_text(encoding="utf-8"), re.M))


def mutants_report(results: list[list[str]], diffs: dict[str, str], seconds: float,
                   answers: dict[str, str] | None = None) -> str:
    """Markdown: per module the count of each status and the kill rate, then each non-killed mutant's
    diff with its answer in docs/mutants.md (`answers`), or marked new."""
    answers = answers or {}
    by_module: dict[str, dict[str, int]] = {}
    for name, status in results:
        module = name.split(".x", 1)[0]  # mutmut names: module.x_function__mutmut_N, module.xǁClassǁmethod__mutmut_N
        counts = by_module.setdefault(module, dict.fromkeys(MUTANT_STATUSES, 0))
        counts[status] = counts.get(status, 0) + 1
    lines = [f"# Mutation testing: {len(results)} mutants, {seconds / 60:.1f} min", "",
             "| module | " + " | ".join(MUTANT_STATUSES) + " | kill rate |", "|---" * (len(MUTANT_STATUSES) + 2) + "|"]
    total = dict.fromkeys(MUTANT_STATUSES, 0)
    for module, counts in sorted(by_module.items()):
        for status in counts:
            total[status] = total.get(status, 0) + counts[status]
        lines.append(f"| {module} | " + " | ".join(str(counts[s]) for s in MUTANT_STATUSES) + f" | {kill_rate(counts)} |")
    lines.append("| **all** | " + " | ".join(str(total[s]) for s in MUTANT_STATUSES) + f" | {kill_rate(total)} |")
    lines += ["", "Kill rate: (killed + timeout + segfault) / every mutant tested or without a test; "
              "'not checked': the run stopped before it.", "",
              f"## Not killed: {len(diffs)}, {len(diffs.keys() & answers.keys())} answered in docs/mutants.md", ""]
    for name, diff in sorted(diffs.items()):
        answer = answers.get(name, "**new**: kill it with a test, or answer it in docs/mutants.md")
        lines += [f"### `{name}`", "", answer, "", f"```diff\n{diff.strip()}\n```", ""]
    return "\n".join(lines)


def kill_rate(counts: dict[str, int]) -> str:
    killed = sum(counts[s] for s in KILLED)
    tried = killed + counts["survived"] + counts["suspicious"] + counts["no tests"]
    return f"{killed / tried:.1%}" if tried else "-"
