"""Every command in the README runs as written: its code blocks are extracted and the cheap ones run (Python
blocks in full; `geom.run` and `geom.sweep` command lines with `--check`, which resolves notebooks, parameters,
model names and sources without computing). A command the rules below do not know fails the test, so a new
README command gets a rule. Every CLI's --help shows its defaults and describes every option."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from geom import paths

README = paths.ROOT / "README.md"
PY = ".venv/bin/python"

# commands that are not run here, with the reason (each is matched by its start)
NOT_RUN = {
    "bash scripts/smoke.sh": "the main job itself (every notebook at smoke size: nbval runs them in this suite)",
    "bash scripts/test.sh": "the test command itself (CI runs it)",
    "bash benchmarks/gpu.sh": "needs a CUDA GPU",
    "ray start": "starts a Ray cluster node",
}
HELP_ONLY = {  # long runs: their entry point and options are checked through --help
    f"{PY} -m geom.models.tiny_ldm train": "~50 min of training",
    f"{PY} -m geom.models.fashion_ldm train": "~2-3 h of training",
    f"{PY} benchmarks/run.py": "minutes of timing",
}
PLACEHOLDERS = ("/models/", "<head-ip>")  # a cluster's paths: not present on this machine


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def bash_commands() -> list[str]:
    """The command lines of the README's bash blocks: continuation lines joined, comments dropped."""
    out = []
    for block in code_blocks("bash"):
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split(" #")[0].strip() if not cmd.lstrip().startswith("#") else ""
            if cmd:
                out.append(" ".join(cmd.split()))
    return out


def plan(cmd: str) -> list[str] | None:
    """The argv that checks ``cmd`` here, or None when it is not run (``NOT_RUN`` or a placeholder path)."""
    if any(cmd.startswith(k) for k in NOT_RUN) or any(p in cmd for p in PLACEHOLDERS):
        return None
    for k in HELP_ONLY:
        if cmd.startswith(k):
            return shlex.split(k) + ["--help"]
    if cmd.startswith(f"{PY} -m geom.run ") or cmd.startswith(f"{PY} -m geom.sweep "):
        return shlex.split(cmd) + ["--check"]
    raise AssertionError(f"README command without a rule in tests/test_readme.py: {cmd!r}")


def test_readme_has_the_commands_we_expect():
    cmds = bash_commands()
    assert "bash scripts/test.sh" in cmds and any(c.startswith(f"{PY} -m geom.sweep") for c in cmds)
    assert len(code_blocks("python")) >= 3


@pytest.mark.parametrize("cmd", bash_commands())
def test_readme_command_runs_as_written(cmd):
    argv = plan(cmd)
    if argv is None:
        pytest.skip("not run here: " + next((v for k, v in NOT_RUN.items() if cmd.startswith(k)),
                                            "a cluster path that does not exist on this machine"))
    argv[0] = str(paths.ROOT / argv[0]) if argv[0] == PY else argv[0]
    res = subprocess.run(argv, cwd=paths.ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"


@pytest.mark.parametrize("i", range(len(code_blocks("python"))))
def test_readme_python_block_runs_as_written(i):
    code = code_blocks("python")[i]
    res = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"README python block {i}:\n{code}\n{res.stderr[-3000:]}"


CLIS = [["-m", "geom.run"], ["-m", "geom.sweep"], ["-m", "geom.models.tiny_ldm", "train"],
        ["-m", "geom.models.tiny_ldm", "verify"], ["-m", "geom.models.fashion_ldm", "train"],
        ["-m", "geom.models.fashion_ldm", "verify"], [str(paths.ROOT / "benchmarks" / "run.py")]]


@pytest.mark.parametrize("cli", CLIS, ids=lambda c: " ".join(c[-2:]))
def test_every_cli_help_shows_defaults_and_describes_every_option(cli):
    res = subprocess.run([sys.executable, *cli, "--help"], cwd=paths.ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout.split("options:", 1)[1]
    # one block per option: its first line starts with "  -" (a flag); the block is the option's help text
    blocks = re.split(r"\n(?=  -)", text.split("\n\n")[0].strip("\n"))
    for b in blocks:
        flags, _, rest = b.strip().partition("  ")
        if flags.startswith("-h"):
            continue
        words = " ".join(b.split()[1:])
        described = len(rest.split()) + len(b.split("\n", 1)[1].split() if "\n" in b else []) >= 2
        assert described, f"{' '.join(cli)}: option {flags!r} has no description"
        takes_value = bool(re.match(r"^-{1,2}[\w-]+(, -{1,2}[\w-]+)? [A-Z]", b.strip()))
        if takes_value and "(default" not in words and "repeatable" not in words:
            raise AssertionError(f"{' '.join(cli)}: option {flags!r} does not show its default")
