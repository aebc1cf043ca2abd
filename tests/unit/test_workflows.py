"""The CI workflows stay true: valid GitHub workflows, the PR job runs the README's test
command, and the nightly job's shell steps work when run here (2 shards of 20 s, then the
merge)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PR, NIGHTLY = WORKFLOWS / "pr.yml", WORKFLOWS / "nightly.yml"
VENV_BIN = Path(sys.executable).parent


def _load(path: Path) -> dict[str, Any]:
    # YAML 1.2 (ruamel, as check-jsonschema reads it): `on` stays a string key.
    return YAML(typ="safe", pure=True).load(path.read_text())


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    # The vendored schema ships inside check-jsonschema: no network needed.
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path", [PR, NIGHTLY], ids=lambda p: p.name)
def test_workflow_is_valid_against_the_github_workflow_schema(path: Path) -> None:
    result = _check_jsonschema(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_job_without_runs_on(tmp_path: Path) -> None:
    broken = tmp_path / "pr.yml"
    text = PR.read_text()
    assert "    runs-on: ubuntu-latest\n" in text
    broken.write_text(text.replace("    runs-on: ubuntu-latest\n", "", 1))
    result = _check_jsonschema(broken)
    assert result.returncode != 0
    assert "runs-on" in result.stdout + result.stderr


# --- pr.yml runs the README's test command -------------------------------------------------


def _readme_test_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^(\./scripts/\S+)\s+#.*\brun the test suite\b", readme, re.M)
    assert match, "README.md names no test command (`./scripts/... # ... run the test suite`)"
    return shlex.split(match.group(1))


def _commands(script: str) -> list[list[str]]:
    """The simple commands of a run: block, one per logical line (no comments)."""
    logical = re.sub(r"\\\n", " ", script)
    return [shlex.split(line, comments=True) for line in logical.splitlines()
            if shlex.split(line, comments=True)]


def _runs_tests(command: list[str]) -> bool:
    return any(Path(word).name in ("test.sh", "pytest", "py.test") for word in command) or (
        "-m" in command and "pytest" in command)


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_pr_workflow_runs_the_readme_test_command_and_keeps_its_reports(tmp_path: Path) -> None:
    workflow = _load(PR)
    assert "pull_request" in workflow["on"]
    assert workflow["on"]["push"]["branches"] == ["main"]
    pythons = [s["with"]["python-version"] for s in _steps(workflow)
               if s.get("uses", "").startswith("actions/setup-python@")]
    assert pythons == ["3.11"]

    readme = _readme_test_command()
    assert readme == ["./scripts/test.sh"]
    test_commands = [c for s in _steps(workflow) if "run" in s for c in _commands(s["run"]) if _runs_tests(c)]
    assert len(test_commands) == 1, test_commands
    command = test_commands[0]
    assert command[:len(readme)] == readme, f"pr.yml runs {command}, the README says {readme}"
    extra = command[len(readme):]

    # What follows the README's command is pytest arguments, handed on by the script: pytest
    # itself must accept them (--junitxml, and --conform-report from the plugin), with the
    # project's configuration, on a one-test file so that nothing heavy is imported.
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    collect = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         "--noconftest", "-n", "0", *extra, "--collect-only", "-q", "test_one.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert collect.returncode == 0, collect.stdout[-2000:] + collect.stderr[-2000:]

    # Both reports those arguments write are uploaded, whether the tests passed or not.
    junit = next(a.split("=", 1)[1] for a in extra if a.startswith("--junitxml="))
    report = extra[extra.index("--conform-report") + 1]
    uploads = {s["with"]["path"].rstrip("/"): s for s in _steps(workflow)
               if s.get("uses", "").startswith("actions/upload-artifact@v4")}
    assert set(uploads) == {junit, report.rstrip("/")}
    assert all(s.get("if") == "always()" for s in uploads.values())


# --- nightly.yml, run here ------------------------------------------------------------------

_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")


def _evaluate(expression: str, context: dict[str, str]) -> str:
    """The little of GitHub's expression language the run steps use: context names,
    literals, and ``a || b``."""
    value = ""
    for operand in (o.strip() for o in expression.split("||")):
        if re.fullmatch(r"'[^']*'", operand):
            value = operand[1:-1]
        elif re.fullmatch(r"-?\d+(\.\d+)?", operand):
            value = operand
        elif operand in context:
            value = context[operand]
        else:
            raise AssertionError(f"this test cannot evaluate ${{{{ {expression.strip()} }}}}")
        if value:
            return value
    return value


def _substitute(text: str, context: dict[str, str]) -> str:
    return _EXPRESSION.sub(lambda m: _evaluate(m.group(1), context), text)


def _run_job(job: dict[str, Any], *, workspace: Path, context: dict[str, str],
             env: dict[str, str], ok: tuple[int, ...] = (0,)) -> dict[str, str]:
    """Run the job's ``run:`` steps in order, as GitHub's default shell would (``bash -e -o
    pipefail``), skipping the install step (this venv stands in for it). Returns the step
    outputs as ``steps.<id>.outputs.<name>`` context entries."""
    workspace.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    for number, step in enumerate(job["steps"]):
        if "run" not in step or step.get("id") == "install":
            continue
        assert not {"if", "shell", "working-directory"} & set(step), f"step {step} needs a runner"
        context = {**context, **outputs}
        files = {name: workspace.parent / f"{workspace.name}.{number}.{name}"
                 for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")}
        for file in files.values():
            file.write_text("")
        step_env = {**env, **{k: str(v) for k, v in files.items()},
                    **{k: _substitute(str(v), context) for k, v in step.get("env", {}).items()}}
        script = workspace.parent / f"{workspace.name}.{number}.sh"
        script.write_text(_substitute(step["run"], context))
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                cwd=workspace, env=step_env, capture_output=True, text=True, timeout=600)
        assert result.returncode in ok, (
            f"step {step.get('name', step.get('id'))!r} exited {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        for line in files["GITHUB_OUTPUT"].read_text().splitlines():
            key, _, value = line.partition("=")
            outputs[f"steps.{step.get('id')}.outputs.{key}"] = value
        # What a step adds to GITHUB_ENV and GITHUB_PATH holds for the steps after it.
        for line in files["GITHUB_ENV"].read_text().splitlines():
            key, _, value = line.partition("=")
            env = {**env, key: value}
        for line in files["GITHUB_PATH"].read_text().splitlines():
            env = {**env, "PATH": f"{line}{os.pathsep}{env['PATH']}"}
    return outputs


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]


def _outcome_keys(store: Path) -> set[str]:
    with sqlite3.connect(store) as db:
        return {key for (key,) in db.execute("SELECT key FROM outcomes")}


@pytest.mark.slow
def test_nightly_shell_steps_fuzz_two_shards_and_merge_them(tmp_path: Path) -> None:
    workflow = _load(NIGHTLY)
    assert "schedule" in workflow["on"] and {"budget", "shards"} <= set(workflow["on"]["workflow_dispatch"]["inputs"])
    jobs = workflow["jobs"]
    context = {"inputs.budget": "20", "inputs.shards": "2", "github.run_number": "7",
               "github.run_id": "1000", "github.run_attempt": "1"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PYTEST_"))}
    env.update({k: _substitute(str(v), context) for k, v in workflow.get("env", {}).items()})
    assert (env["BUDGET"], env["SHARDS"]) == ("20", "2")
    # The venv's `conform` first on PATH, importing this checkout.
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "PYTHONPATH": str(ROOT)})

    plan_steps = _run_job(jobs["plan"], workspace=tmp_path / "plan", context=context, env=env)
    plan = {name: _substitute(value, plan_steps) for name, value in jobs["plan"]["outputs"].items()}
    matrix = re.fullmatch(r"\$\{\{\s*fromJSON\(needs\.plan\.outputs\.(\w+)\)\s*\}\}",
                          jobs["fuzz"]["strategy"]["matrix"]["shard"])
    assert matrix, jobs["fuzz"]["strategy"]["matrix"]
    shards = json.loads(plan[matrix.group(1)])
    assert shards == [1, 2]

    # Each shard job in its own workspace; its upload step names the artifact and its path.
    artifacts: dict[str, Path] = {}
    [upload] = _uses(jobs["fuzz"], "actions/upload-artifact")
    for shard in shards:
        workspace = tmp_path / f"fuzz-{shard}"
        shard_context = {**context, "matrix.shard": str(shard)}
        _run_job(jobs["fuzz"], workspace=workspace, context=shard_context, env=env)
        name = _substitute(upload["with"]["name"], shard_context)
        artifacts[name] = workspace / upload["with"]["path"]
        assert (artifacts[name] / "index.html").is_file(), sorted(p.name for p in artifacts[name].iterdir())

    # The merge job: download every artifact the pattern matches into <path>/<name>/.
    workspace = tmp_path / "merge"
    [download] = _uses(jobs["merge"], "actions/download-artifact")
    for name, source in artifacts.items():
        if fnmatch.fnmatch(name, download["with"]["pattern"]):
            shutil.copytree(source, workspace / download["with"]["path"] / name)
    # Exit status 1 is new divergences: by design it fails the job, after the merge.
    _run_job(jobs["merge"], workspace=workspace, context=context, env=env, ok=(0, 1))

    [report_upload] = _uses(jobs["merge"], "actions/upload-artifact")
    merged = workspace / report_upload["with"]["path"]
    assert (merged / "index.html").is_file()
    # The store the cache carries to the next night is the one the merge wrote, and it holds
    # what both shards found.
    [restore] = _uses(jobs["merge"], "actions/cache/restore")
    [save] = _uses(jobs["merge"], "actions/cache/save")
    assert restore["with"]["path"] == save["with"]["path"]
    store = workspace / save["with"]["path"]
    assert store.is_file() and store.parent.resolve() == merged.resolve()
    per_shard = [_outcome_keys(path / store.name) for path in artifacts.values()]
    assert all(per_shard) and per_shard[0] != per_shard[1]
    assert set().union(*per_shard) <= _outcome_keys(store)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] >= len(shards)
