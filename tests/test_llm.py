"""The LLM strategy through the real anthropic SDK against a local Messages API server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SKYLAB
from tests.fake_anthropic import FakeMessagesAPI, error, text, tool, turn
from tests.loop_experiment import make_loop_experiment

LLM_TABLE = '\n[llm]\nmodel = "claude-test"\nretries = 2\nretry_backoff_seconds = 0.01\nmax_turns = 8\n'


@pytest.fixture
def api() -> Any:
    server = FakeMessagesAPI()
    with server.running():
        yield server


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    directory = make_loop_experiment(tmp_path / "q")
    with open(directory / "experiment.toml", "a") as handle:
        handle.write(LLM_TABLE)
    subprocess.run(["git", "commit", "-qam", "llm settings"], cwd=directory, check=True)
    subprocess.run(["git", "update-ref", "refs/skylab/baseline", "HEAD"], cwd=directory, check=True)
    return directory


def run_llm(exp: Path, api: FakeMessagesAPI, *args: str, env: dict[str, str] | None = None) -> Any:
    environment = {
        **os.environ,
        "ANTHROPIC_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": api.url,
        "COLUMNS": "200",
    }
    environment.update(env or {})
    command = [SKYLAB, "run", "--strategy", "llm", "--tag", "t", "-C", str(exp), *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def history(exp: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [SKYLAB, "history", "--json", "-C", str(exp)], capture_output=True, text=True, check=True
    )
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def edit(old: str, new: str, description: str) -> list[dict[str, Any]]:
    return [
        turn(text("Let me look."), tool("read_file", path="train.py")),
        turn(tool("replace_in_file", path="train.py", old_string=old, new_string=new)),
        turn(tool("finish", description=description, hypothesis="closer to the optimum")),
    ]


def test_successful_edit_is_trained_and_kept(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = edit("\nX = 0\n", "\nX = 3\n", "move X to 3")
    result = run_llm(exp, api, "--max-trials", "2")
    assert result.returncode == 0, result.stderr
    rows = history(exp)
    assert [r["decision"] for r in rows] == ["keep", "keep"]
    assert rows[1]["value"] == 2.0 and rows[1]["strategy"] == "llm"
    assert rows[1]["description"] == "move X to 3 — hypothesis: closer to the optimum"
    assert rows[1]["llm_tokens"] == 3 * 1100
    first = api.requests[0]
    assert first["model"] == "claude-test" and {t["name"] for t in first["tools"]} >= {"read_file", "finish"}
    (opening,) = first["messages"][0]["content"]
    assert opening["cache_control"] == {"type": "ephemeral"} and first["system"][0]["cache_control"]
    text_ = opening["text"]
    assert "experiment.toml" in text_ and "SPAWN_CHILD = False" in text_ and "baseline" in text_
    assert "fixed 1s of wall-clock time" in first["system"][0]["text"]
    assert "0 trials since the last keep; 1 trial left" in text_  # this proposal is the last one
    assert "X = 0" in api.tool_results(1)[0]["content"]  # read_file's answer went back to the model
    sent = api.headers[0]
    assert sent.get("x-api-key") == "sk-test" or sent.get("Authorization") == "Bearer sk-test"
    assert (
        "LLM tokens used: 3,300"
        in subprocess.run(
            [SKYLAB, "history", "-C", str(exp)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        ).stdout
    )


def test_regression_is_reverted(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = edit("\nY = 0\n", "\nY = 5\n", "push Y up")
    assert run_llm(exp, api, "--max-trials", "2").returncode == 0
    rows = history(exp)
    assert rows[1]["decision"] == "revert" and rows[1]["value"] == 46.0  # (0-3)^2 + (5+1)^2 + 1
    assert (
        subprocess.run(
            ["git", "rev-parse", "skylab/t"], cwd=exp, capture_output=True, text=True
        ).stdout.strip()
        == rows[0]["commit"]
    )


def test_edits_outside_the_editable_files_are_refused_as_tool_errors(exp: Path, api: FakeMessagesAPI) -> None:
    outside = exp.parent / "x"
    api.script = [
        turn(tool("replace_in_file", path="prepare.py", old_string='"""', new_string="# hacked")),
        turn(tool("write_file", path="../x", content="escaped")),
        turn(tool("write_file", path=str(exp / "train.py"), content="X = 9\n")),
        turn(tool("read_file", path="/etc/passwd")),
        turn(tool("finish", description="tried the forbidden files", hypothesis="none")),
    ]
    assert run_llm(exp, api, "--max-trials", "2").returncode == 0
    errors = [api.tool_results(i)[0] for i in range(1, 5)]
    assert all(e["is_error"] for e in errors)
    assert "frozen (read-only)" in errors[0]["content"]
    assert "'..' is not allowed" in errors[1]["content"]
    assert "absolute paths are not allowed" in errors[2]["content"]
    assert "absolute paths are not allowed" in errors[3]["content"]
    assert not outside.exists()
    rows = history(exp)
    assert rows[1]["status"] == "noop"  # nothing changed, nothing trained
    assert "hacked" not in (exp / ".skylab" / "worktrees" / "t" / "prepare.py").read_text()


def test_symlink_out_of_the_tree_is_refused(exp: Path, api: FakeMessagesAPI, tmp_path: Path) -> None:
    from skylab.errors import ConfigError
    from skylab.experiment.config import load_config
    from skylab.strategy.workspace import ToolError, Workspace

    target = tmp_path / "secret.txt"
    target.write_text("secret")
    config = load_config(exp)  # loaded before the swap: the workspace checks again at each access
    (exp / "train.py").unlink()
    (exp / "train.py").symlink_to(target)
    with pytest.raises(ConfigError, match="resolves outside the experiment directory"):
        load_config(exp)
    workspace = Workspace(exp, config)
    with pytest.raises(ToolError, match="leads outside the experiment"):
        workspace.read_file("train.py")
    with pytest.raises(ToolError, match="leads outside the experiment"):
        workspace.write_file("train.py", "X = 1\n")
    assert target.read_text() == "secret"


def test_syntax_error_is_a_crash_without_training(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [
        turn(tool("write_file", path="train.py", content="X = (\n")),
        turn(tool("finish", description="broken", hypothesis="none")),
    ]
    assert run_llm(exp, api, "--max-trials", "2").returncode == 0
    rows = history(exp)
    assert rows[1]["status"] == "crash" and rows[1]["wall_seconds"] is None
    assert not (exp / ".skylab" / "logs" / "t" / "2.log").exists()


def test_same_change_twice_is_recorded_as_duplicate(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = edit("\nY = 0\n", "\nY = 5\n", "push Y up") + edit(
        "\nY = 0\n", "\nY = 5\n", "push Y up again"
    )
    assert run_llm(exp, api, "--max-trials", "3").returncode == 0
    rows = history(exp)
    assert [r["status"] for r in rows] == ["success", "success", "duplicate"]
    assert not (exp / ".skylab" / "logs" / "t" / "3.log").exists()


def test_rate_limits_and_server_errors_are_retried(exp: Path, api: FakeMessagesAPI) -> None:
    overloaded = [error(429, "rate_limit_error", "slow down"), error(500, "api_error", "oops")]
    # The SDK's own retries take three failures; the fourth fails the attempt, the run-level policy retries.
    api.script = overloaded * 2 + edit("\nX = 0\n", "\nX = 2\n", "X to 2")
    result = run_llm(exp, api, "--max-trials", "2")
    assert result.returncode == 0, result.stderr
    rows = history(exp)
    assert rows[1]["value"] == 3.0 and rows[1]["decision"] == "keep"
    assert len(api.requests) == 4 + 3


def test_persistent_failure_stops_the_run_with_one_line(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [error(529, "overloaded_error", "Overloaded")] * 20
    result = run_llm(exp, api, "--max-trials", "3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: the Anthropic API kept failing after 3")
    assert "Traceback" not in result.stderr


def test_auth_failure_stops_the_run_with_one_line(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [error(401, "authentication_error", "invalid x-api-key")]
    result = run_llm(exp, api, "--max-trials", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: the Anthropic API rejected the key (HTTP 401): invalid x-api-key"
    assert len(api.requests) == 1  # never retried
    assert [r["status"] for r in history(exp)] == ["success"]  # the baseline, trained before asking


def test_missing_api_key_is_a_clear_error(exp: Path, api: FakeMessagesAPI) -> None:
    result = run_llm(exp, api, "--max-trials", "1", env={"ANTHROPIC_API_KEY": ""})
    assert result.returncode == 2 and "ANTHROPIC_API_KEY is not set" in result.stderr


FAKE_CLAUDE = """#!{python}
import json, os, sys
from pathlib import Path
Path({log!r}).write_text(json.dumps(sys.argv[1:]))
Path({log!r} + ".stdin").write_text(sys.stdin.read())
mode = os.environ.get("FAKE_CLAUDE_MODE", "")
if mode == "max_turns":
    print(json.dumps({{"type": "result", "subtype": "error_max_turns", "is_error": True, "result": ""}}))
    sys.exit(1)
if mode == "api_error":
    print(json.dumps({{"type": "result", "subtype": "success", "is_error": True,
                      "result": "API Error: 529 Overloaded"}}))
    sys.exit(0)
target = Path("{target}")
source = target.read_text()
edited = source.replace("\\nX = 0\\n", "\\nX = 1\\n") if "X = 0" in source else source + "# edited\\n"
target.write_text(edited)
print(json.dumps({{"type": "result", "subtype": "success",
                  "result": "Moved X.\\nDESCRIPTION: X to 1 — hypothesis: nearer 3",
                  "usage": {{"input_tokens": 500, "output_tokens": 40, "cache_read_input_tokens": 100}}}}))
"""


def install_fake_claude(bin_dir: Path, log: Path, target: str) -> None:
    import sys

    bin_dir.mkdir()
    script = bin_dir / "claude"
    script.write_text(FAKE_CLAUDE.format(python=sys.executable, log=str(log), target=target))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_claude_code_backend_command_line_and_diff(exp: Path, api: FakeMessagesAPI, tmp_path: Path) -> None:
    """The CLI itself cannot reach a model here: a stand-in `claude` checks what Skylab asks of it."""
    log = tmp_path / "argv.json"
    install_fake_claude(tmp_path / "bin", log, "train.py")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    result = run_llm(exp, api, "--agent", "claude-code", "--model", "claude-x", "--max-trials", "2", env=env)
    assert result.returncode == 0, result.stderr
    argv = json.loads(log.read_text())
    prompt = Path(f"{log}.stdin").read_text()  # on stdin: Linux refuses an argument over 128 KiB
    assert argv[0] == "-p" and argv[1] == "--output-format" and "You may edit only: train.py" in prompt
    assert "`finish`" not in prompt  # a tool Claude Code does not have
    assert argv[argv.index("--model") + 1] == "claude-x"
    assert argv[argv.index("--allowedTools") + 1] == "Read,Edit,Write,Glob,Grep"
    assert "Bash" in argv[argv.index("--disallowedTools") + 1]
    rows = history(exp)
    assert rows[1]["description"] == "X to 1 — hypothesis: nearer 3" and rows[1]["value"] == 6.0
    assert rows[1]["llm_tokens"] == 640


def test_claude_code_edit_of_a_frozen_file_is_discarded(
    exp: Path, api: FakeMessagesAPI, tmp_path: Path
) -> None:
    install_fake_claude(tmp_path / "bin", tmp_path / "argv.json", "prepare.py")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    result = run_llm(exp, api, "--agent", "claude-code", "--max-trials", "2", env=env)
    assert result.returncode == 2
    assert "discarded a proposal that changed non-editable files: prepare.py" in result.stdout
    assert len(history(exp)) == 1


def test_claude_code_not_installed_is_a_clear_error(exp: Path, api: FakeMessagesAPI) -> None:
    result = run_llm(exp, api, "--agent", "claude-code", "--max-trials", "1", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "Claude Code CLI (`claude`) is not installed" in result.stderr


@pytest.mark.parametrize("mode", ["max_turns", "api_error"])
def test_claude_code_errors_discard_the_proposal_and_the_run_goes_on(
    exp: Path, api: FakeMessagesAPI, tmp_path: Path, mode: str
) -> None:
    install_fake_claude(tmp_path / "bin", tmp_path / "argv.json", "train.py")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "FAKE_CLAUDE_MODE": mode}
    result = run_llm(exp, api, "--agent", "claude-code", "--max-trials", "3", env=env)
    assert result.returncode == 0, result.stderr
    rows = history(exp)
    assert [r["status"] for r in rows] == ["success", "discarded", "discarded"]
    why = "reached its --max-turns" if mode == "max_turns" else "reported an error: API Error: 529 Overloaded"
    assert why in rows[1]["description"]
    assert not (exp / ".skylab" / "logs" / "t" / "2.log").exists()  # recorded, never trained


def test_malformed_tool_input_is_a_tool_error_the_model_sees(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [
        turn(tool("write_file", path="train.py", content=None)),
        turn(tool("read_file", path="train.py", offset="ten")),
        *edit("\nX = 0\n", "\nX = 3\n", "move X to 3"),
    ]
    result = run_llm(exp, api, "--max-trials", "2")
    assert result.returncode == 0, result.stderr
    (null,) = api.tool_results(1)
    assert null["is_error"] and "argument 'content' must be a string, not NoneType" in null["content"]
    assert "argument 'offset' must be an integer" in api.tool_results(2)[0]["content"]
    assert history(exp)[1]["decision"] == "keep"


def test_finish_is_refused_while_an_edit_of_the_same_response_failed(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [
        turn(
            tool("finish", description="SwiGLU MLP", hypothesis="better MLP"),
            tool("replace_in_file", path="train.py", old_string="class MLP", new_string="class SwiGLU"),
        ),
        *edit("\nX = 0\n", "\nX = 3\n", "move X to 3"),
    ]
    assert run_llm(exp, api, "--max-trials", "2").returncode == 0
    finish, failed = api.tool_results(1)
    assert failed["is_error"] and "old_string not found" in failed["content"]
    assert finish["is_error"] and "not finished: an edit in this response failed" in finish["content"]
    assert history(exp)[1]["description"] == "move X to 3 — hypothesis: closer to the optimum"


def test_a_model_that_never_finishes_is_discarded_not_trained(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [
        turn(tool("replace_in_file", path="train.py", old_string="\nX = 0\n", new_string="\nX = 1\n"))
    ]
    api.script += [turn(tool("list_files")) for _ in range(7)]  # max_turns = 8, and no finish
    api.script += edit("\nY = 0\n", "\nY = -1\n", "Y to -1")
    result = run_llm(exp, api, "--max-trials", "3")
    assert result.returncode == 0, result.stderr
    rows = history(exp)
    assert [r["status"] for r in rows] == ["success", "discarded", "success"]
    assert rows[1]["description"] == "unfinished: the model did not call finish in 8 turns"
    assert "discarded, not trained" in result.stdout
    assert not (exp / ".skylab" / "logs" / "t" / "2.log").exists()


def test_a_response_cut_off_at_max_tokens_runs_no_half_written_call(exp: Path, api: FakeMessagesAPI) -> None:
    cut = turn(
        tool("write_file", path="train.py", content="X = 3\n# the rest never came"), stop_reason="max_tokens"
    )
    api.script = [cut, *edit("\nX = 0\n", "\nX = 3\n", "move X to 3")]
    assert run_llm(exp, api, "--max-trials", "2").returncode == 0
    (result,) = api.tool_results(1)
    assert result["is_error"] and "cut off at max_tokens" in result["content"]
    assert history(exp)[1]["value"] == 2.0  # trained on the full file, edited by the later call


def test_cached_tokens_are_counted_and_thinking_is_sent(exp: Path, api: FakeMessagesAPI) -> None:
    with open(exp / "experiment.toml", "a") as handle:
        handle.write("thinking_budget = 1024\n")
    subprocess.run(["git", "commit", "-qam", "thinking"], cwd=exp, check=True)
    subprocess.run(["git", "update-ref", "refs/skylab/baseline", "HEAD"], cwd=exp, check=True)
    api.script = [
        turn(*step["body"]["content"], cache_read=5000) for step in edit("\nX = 0\n", "\nX = 3\n", "X")
    ]
    assert run_llm(exp, api, "--max-trials", "2").returncode == 0
    assert api.requests[0]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    row = history(exp)[1]
    assert row["other"]["tokens_cached"] == "15000" and row["llm_tokens"] == 3 * (1100 + 5000)


def test_reads_come_in_windows_and_writes_are_capped(tmp_path: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.strategy.workspace import MAX_WRITE_CHARS, ToolError, Workspace

    exp = make_loop_experiment(tmp_path / "q")
    (exp / "train.py").write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    workspace = Workspace(exp, load_config(exp))
    first = workspace.read_file("train.py")
    assert first.startswith("train.py: lines 1-400 of 1000 (more: read with offset=401)")
    assert workspace.read_file("train.py", 990, 50).splitlines()[-1].endswith("line 1000")
    with pytest.raises(ToolError, match="over the 200000 a write may hold"):
        workspace.write_file("train.py", "x" * (MAX_WRITE_CHARS + 1))


def test_thinking_budget_must_leave_room_for_the_answer(exp: Path) -> None:
    with open(exp / "experiment.toml", "a") as handle:
        handle.write("thinking_budget = 9000\nmax_tokens = 8192\n")
    result = subprocess.run(
        [SKYLAB, "run", "--max-trials", "1", "-C", str(exp)], capture_output=True, text=True
    )
    assert (
        result.returncode == 2
        and "llm.thinking_budget: must be below max_tokens (8192), not 9000" in result.stderr
    )


def many_trials(store: Any, count: int) -> None:
    from tests.factory import add_trial

    add_trial(store, "t", 3.0, description="baseline")
    for n in range(2, count + 1):
        value = 3.0 - 0.001 * n if n % 10 == 0 else 3.5 + 0.001 * n
        add_trial(store, "t", value, description=f"idea {n}", params={"LR": n / 1000})


def test_the_prompt_holds_every_trial_and_groups_the_oldest_when_it_must(tmp_path: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.store.gitstore import TrialStore
    from skylab.strategy import ProposalContext
    from skylab.strategy.llm_context import build_context, history_section

    exp = make_loop_experiment(tmp_path / "q")
    store = TrialStore.open(exp)
    many_trials(store, 200)
    history = store.load()
    context = ProposalContext(load_config(exp), history, "t", store.start_point(), None, exp)
    text = build_context(context, 240_000)
    assert all(f"\nt/{n} " in text for n in range(1, 201))  # every row, the baseline first
    assert "200 trials; baseline t/1 3.000000 → best t/200 2.800000; 0 trials since the last keep" in text
    tight = history_section(context, 6_000)
    assert len(tight) <= 6_000 and "\nt/1 (kept)" in tight and "t/200 (best, kept)" in tight
    assert "trials changing LR, none kept (" in tight  # the oldest reverted rows, grouped
    assert all(f"\nt/{n} (kept)" in tight or n == 200 for n in range(10, 201, 10))  # every keep stays


def test_read_log_returns_a_window_of_any_trials_log(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [
        turn(tool("read_log", trial="t/1", offset=-4)),
        turn(tool("read_log", trial="t/99")),
        *edit("\nX = 0\n", "\nX = 3\n", "move X to 3"),
    ]
    assert run_llm(exp, api, "--max-trials", "2").returncode == 0
    (window,) = api.tool_results(1)
    assert "log of t/1: lines" in window["content"] and "peak_vram_mb" in window["content"]
    assert api.tool_results(2)[0]["is_error"] and "no such trial" in api.tool_results(2)[0]["content"]


def test_failures_come_with_their_change_to_fix_it(exp: Path, api: FakeMessagesAPI) -> None:
    api.script = [
        turn(
            tool(
                "replace_in_file",
                path="train.py",
                old_string="\nCRASH = False\n",
                new_string="\nCRASH = True\n",
            )
        ),
        turn(tool("finish", description="try crashing", hypothesis="none")),
        *edit("\nX = 0\n", "\nX = 3\n", "move X to 3"),
    ]
    assert run_llm(exp, api, "--max-trials", "3").returncode == 0
    opening = api.requests[2]["messages"][0]["content"][0]["text"]
    assert "fix the bug, or avoid the idea" in opening and "+CRASH = True" in opening
    assert "crash (exited with status 1" in opening  # the status with its reason, in the history row


def test_finish_records_category_prediction_and_lesson_and_the_ledger_scores_them(
    exp: Path, api: FakeMessagesAPI
) -> None:
    def proposal(old: str, new: str, predicted: float, lesson: str) -> list[dict[str, Any]]:
        done = tool(
            "finish",
            description=f"{old.strip()} -> {new.strip()}",
            hypothesis="h",
            category="optimisation",
            predicted_delta=predicted,
            lesson=lesson,
        )
        return [turn(tool("replace_in_file", path="train.py", old_string=old, new_string=new)), turn(done)]

    api.script = proposal("\nX = 0\n", "\nX = 3\n", -5.0, "X matters most") + proposal(
        "\nY = 0\n", "\nY = 2\n", -1.0, "Y looked promising\nbut was not"
    )
    api.script += [turn(tool("list_files"))] * 2 + edit("\nY = 0\n", "\nY = -1\n", "Y to -1")
    assert run_llm(exp, api, "--max-trials", "4").returncode == 0
    rows = history(exp)
    assert rows[1]["other"]["category"] == "optimisation" and rows[1]["other"]["predicted_delta"] == "-5.0"
    assert rows[2]["other"]["lesson"] == "Y looked promising but was not"  # one line in the note
    # The third proposal's prompt carries the memory and the scores: X predicted -5, measured -9
    # (right direction, off by 4); Y predicted -1, measured +8 (wrong, off by 9).
    opening = api.requests[4]["messages"][0]["content"][0]["text"]
    assert "## Research memory" in opening and "- t/2: X matters most" in opening
    assert "- optimisation: 2 predictions, direction right 1/2, mean error 6.5" in opening
    assert "Categories tried so far: optimisation 2" in opening


def test_memory_is_consolidated_within_its_cap_and_kept_in_the_notes(tmp_path: Path) -> None:
    import json as json_

    from skylab.experiment.config import load_config
    from skylab.store.gitstore import TrialStore
    from skylab.strategy import ProposalContext
    from skylab.strategy.llm_context import build_context
    from skylab.strategy.research import CONSOLIDATE_EVERY, consolidation_due, memory_section
    from tests.factory import add_trial, rewrite_note

    exp = make_loop_experiment(tmp_path / "q")
    store = TrialStore.open(exp)
    add_trial(store, "t", 3.0, description="baseline")
    for n in range(CONSOLIDATE_EVERY):
        ref = add_trial(store, "t", 3.5, description=f"idea {n}")
        note = store.note_for(ref.commit)
        assert note is not None
        note.other["lesson"] = f"lesson {n}"
        if n == 3:
            note.other["memory"] = json_.dumps("LR above 0.05 diverges.\nDepth helps.")
        rewrite_note(store, ref.commit, note)
    history = store.load()
    section = memory_section(history, "t")
    assert section.splitlines()[1:3] == ["LR above 0.05 diverges.", "Depth helps."]
    assert "- t/4: lesson 2" not in section and "- t/6: lesson 4" in section  # lessons since the memory
    assert not consolidation_due(history, "t")  # 6 lessons since: not yet
    context = ProposalContext(load_config(exp), history, "t", store.start_point(), None, exp)
    assert "call update_memory" not in build_context(context, 100_000)


def test_update_memory_is_capped_and_lands_in_the_trials_note(tmp_path: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.strategy.llm import ApiStrategy, _research_notes
    from skylab.strategy.research import MEMORY_CHARS
    from skylab.strategy.workspace import ToolError, Workspace

    exp = make_loop_experiment(tmp_path / "q")
    workspace = Workspace(exp, load_config(exp))
    with pytest.raises(ToolError, match=f"keep it within {MEMORY_CHARS}"):
        ApiStrategy._call(workspace, "update_memory", {"text": "x" * (MEMORY_CHARS + 1)})
    ApiStrategy._call(workspace, "update_memory", {"text": "Depth helps.\nLR above 0.05 diverges."})
    notes = _research_notes({"description": "d", "category": "alchemy", "predicted_delta": True}, workspace)
    assert notes == {"category": "other", "memory": json.dumps("Depth helps.\nLR above 0.05 diverges.")}


def test_an_equal_but_simpler_change_is_kept(exp: Path, api: FakeMessagesAPI) -> None:
    config = exp / "experiment.toml"
    config.write_text(config.read_text().replace("keep_simpler = false", "keep_simpler = true"))
    subprocess.run(["git", "commit", "-qam", "keep simpler"], cwd=exp, check=True)
    subprocess.run(["git", "update-ref", "refs/skylab/baseline", "HEAD"], cwd=exp, check=True)
    dead_code = 'if HUGE_LINE:\n    print("x" * HUGE_LINE, flush=True)\n'
    api.script = edit(dead_code, "", "drop the HUGE_LINE knob") + edit(
        "\nX = 0\n", "\nX = 0  # zero\n", "a comment"
    )
    assert run_llm(exp, api, "--max-trials", "3").returncode == 0
    rows = history(exp)
    assert rows[1]["value"] == rows[0]["value"] and rows[1]["decision"] == "keep" and rows[1]["is_best"]
    assert rows[1]["verdict"].startswith("simpler (2 lines fewer) and within noise of the best")
    assert rows[2]["decision"] == "revert"  # equal, and no simpler: nothing gained


def test_near_misses_are_offered_again(tmp_path: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.store.gitstore import TrialStore
    from skylab.strategy import ProposalContext
    from skylab.strategy.llm_context import build_context
    from tests.factory import add_trial

    exp = make_loop_experiment(tmp_path / "q")
    store = TrialStore.open(exp)
    add_trial(store, "t", 2.31, description="baseline", measurements=[2.30, 2.31, 2.32])
    add_trial(store, "t", 2.30, keep=False, description="wider MLP", measurements=[2.29, 2.30, 2.31])
    add_trial(store, "t", 2.35, keep=False, description="worse idea", measurements=[2.34, 2.35, 2.36])
    add_trial(store, "t", 2.29, keep=False, description="one lucky draw")  # never confirmed
    context = ProposalContext(load_config(exp), store.load(), "t", store.start_point(), None, exp)
    text = build_context(context, 100_000)
    section = text[text.index("## Near misses") :].split("\n\n")[0]
    assert "- t/2: wider MLP" in section and "worse idea" not in section and "lucky" not in section


def test_the_report_shows_how_the_predictions_held_up(tmp_path: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.report.html import build_report_data, render_report
    from skylab.store.gitstore import TrialStore
    from tests.factory import add_trial, rewrite_note

    exp = make_loop_experiment(tmp_path / "q")
    store = TrialStore.open(exp)
    add_trial(store, "t", 3.0, description="baseline")
    for value, predicted in ((2.9, -0.2), (3.1, -0.1)):
        ref = add_trial(store, "t", value)
        note = store.note_for(ref.commit)
        assert note is not None
        note.other.update({"category": "schedule", "predicted_delta": repr(predicted)})
        rewrite_note(store, ref.commit, note)
    data = build_report_data(store, load_config(exp))
    count, right, error = data.ledger["schedule"]  # -0.1 measured for -0.2; +0.2 for -0.1 (vs t/2)
    assert (count, right) == (2, 1) and error == pytest.approx(0.2)
    html = render_report(data)
    assert 'id="ledger"' in html and "<td>schedule</td>" in html and "1/2" in html


def test_frozen_files_reach_the_model_in_outline_and_whole_through_read_file(tmp_path: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.experiment.resources import template_dir
    from skylab.experiment.scaffold import init_experiment
    from skylab.store.gitstore import TrialStore
    from skylab.strategy import ProposalContext
    from skylab.strategy.llm_context import build_context, outline
    from skylab.strategy.workspace import Workspace

    exp = tmp_path / "gpt"
    init_experiment(exp, template="gpt-pretrain")
    store = TrialStore.open(exp)
    context = ProposalContext(load_config(exp), store.load(), "t", store.start_point(), None, exp)
    text = build_context(context, 240_000)
    prepare = (template_dir("gpt-pretrain") / "prepare.py").read_text()
    shown = outline("prepare.py", prepare)
    assert "## Frozen files (read-only reference, in outline)" in text and shown in text
    assert "def evaluate_bpb(" in shown and "MAX_SEQ_LEN = " in shown
    assert "np.zeros(encoding.n_vocab" not in shown
    assert len(shown) < len(prepare) / 3  # the bodies stay out...
    assert "read_file prepare.py" in shown
    workspace = Workspace(exp, load_config(exp), lambda trial: "")
    assert "def evaluate_bpb(" in workspace.read_file("prepare.py", 1, 10_000)  # ...and are a call away
    assert outline("notes.txt", "plain text\n") == "plain text\n"
