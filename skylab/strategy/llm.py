"""The LLM strategy: a model reads the experiment and its history and edits the editable files.

Two backends. `api` (the default) talks to the Messages API through the `anthropic` SDK with our
own tools; `claude-code` runs the Claude Code CLI in the trial's work tree. Either way the model only
proposes: the orchestrator diffs the work tree, trains, and keeps or reverts by the metric.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig, LLMConfig, experiment_file
from skylab.strategy.base import Proposal, ProposalContext, Strategy
from skylab.strategy.llm_context import build_context, rules
from skylab.strategy.workspace import ToolError, Workspace

_PATH = {"path": {"type": "string", "description": "path relative to the experiment, e.g. train.py"}}
TOOLS: list[dict[str, Any]] = [
    {
        "name": "list_files",
        "description": "List the experiment's files and whether each is editable or frozen (read-only).",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "read_file",
        "description": "Read one file of the experiment, editable or frozen.",
        "input_schema": {"type": "object", "properties": _PATH, "required": ["path"]},
    },
    {
        "name": "replace_in_file",
        "description": "In an editable file, replace the one exact occurrence of old_string with new_string.",
        "input_schema": {
            "type": "object",
            "properties": {**_PATH, "old_string": {"type": "string"}, "new_string": {"type": "string"}},
            "required": ["path", "old_string", "new_string"],
        },
    },
    {
        "name": "write_file",
        "description": "Replace the whole content of an editable file.",
        "input_schema": {
            "type": "object",
            "properties": {**_PATH, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "finish",
        "description": "End this proposal once the files hold your change.",
        "input_schema": {
            "type": "object",
            "properties": {
                "description": {"type": "string", "description": "one line: what was changed"},
                "hypothesis": {"type": "string", "description": "one line: why it should help"},
            },
            "required": ["description", "hypothesis"],
        },
    },
]
NUDGE = "Make your change with the tools (replace_in_file or write_file), then call finish."


def make_llm_strategy(config: ExperimentConfig) -> Strategy:
    if config.llm.agent == "claude-code":
        return ClaudeCodeStrategy(config)
    return ApiStrategy(config)


class _Originals:
    """The editable files as they were before the model touched them, to start a retry clean."""

    def __init__(self, root: Path, names: tuple[str, ...]) -> None:
        self.files = {name: (root / name).read_bytes() for name in names if (root / name).is_file()}
        self.root = root

    def restore(self) -> None:
        for name, data in self.files.items():
            experiment_file(self.root, name).write_bytes(data)


class ApiStrategy:
    name = "llm"

    def __init__(self, config: ExperimentConfig) -> None:
        import anthropic

        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
            raise SkylabError("ANTHROPIC_API_KEY is not set: the llm strategy needs an Anthropic API key")
        self.config = config
        self.settings: LLMConfig = config.llm
        # The SDK reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL, and retries 429/5xx/timeouts itself.
        self.client = anthropic.Anthropic(max_retries=3, timeout=600.0)

    def propose(self, context: ProposalContext) -> Proposal | None:
        import anthropic

        originals = _Originals(context.workdir, self.config.editable_files)
        settings = self.settings
        for attempt in range(settings.retries + 1):
            try:
                return self._converse(context)
            except anthropic.AuthenticationError as exc:
                raise SkylabError(f"the Anthropic API rejected the key (HTTP 401): {_message(exc)}") from None
            except anthropic.PermissionDeniedError as exc:
                raise SkylabError(f"the Anthropic API refused access (HTTP 403): {_message(exc)}") from None
            except (anthropic.BadRequestError, anthropic.NotFoundError) as exc:
                raise SkylabError(f"the Anthropic API refused the request: {_message(exc)}") from None
            except (anthropic.APIConnectionError, anthropic.APIStatusError) as exc:
                originals.restore()
                if attempt == settings.retries:
                    tries = settings.retries + 1
                    raise SkylabError(
                        f"the Anthropic API kept failing after {tries} attempts: {_message(exc)}"
                    ) from None
                time.sleep(settings.retry_backoff_seconds * 2**attempt)
        return None

    def _converse(self, context: ProposalContext) -> Proposal:
        settings = self.settings
        workspace = Workspace(context.workdir, self.config)
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": build_context(context, settings.context_chars)}
        ]
        tokens_in = tokens_out = 0
        for _ in range(settings.max_turns):
            response = self.client.messages.create(
                model=settings.model,
                max_tokens=settings.max_tokens,
                system=rules(context),
                tools=TOOLS,  # type: ignore[arg-type]
                messages=messages,  # type: ignore[arg-type]
                # The SDK no longer takes temperature as an argument; the API still reads it if sent.
                extra_body=None if settings.temperature is None else {"temperature": settings.temperature},
            )
            tokens_in += response.usage.input_tokens
            tokens_out += response.usage.output_tokens
            usage = {"tokens_in": tokens_in, "tokens_out": tokens_out}
            messages.append({"role": "assistant", "content": [_block(b) for b in response.content]})
            results, finished = [], None
            for block in response.content:
                if block.type != "tool_use":
                    continue
                try:
                    output = self._call(workspace, block.name, dict(block.input))
                    error = False
                    if block.name == "finish":
                        finished = dict(block.input)
                except ToolError as exc:
                    output, error = str(exc), True
                results.append(
                    {"type": "tool_result", "tool_use_id": block.id, "content": output, "is_error": error}
                )
            if finished is not None:
                description = " ".join(str(finished.get("description", "")).split()) or "change by the model"
                hypothesis = " ".join(str(finished.get("hypothesis", "")).split())
                text = f"{description} — hypothesis: {hypothesis}" if hypothesis else description
                return Proposal(description=text, usage=usage)
            if tokens_in + tokens_out >= settings.max_proposal_tokens:
                return Proposal(
                    f"unfinished: the model used its {settings.max_proposal_tokens} tokens", usage=usage
                )
            messages.append({"role": "user", "content": results or NUDGE})
        return Proposal(f"unfinished: no finish after {settings.max_turns} turns", usage=usage)

    @staticmethod
    def _call(workspace: Workspace, name: str, arguments: dict[str, Any]) -> str:
        try:
            if name == "list_files":
                return workspace.list_files()
            if name == "read_file":
                return workspace.read_file(arguments["path"])
            if name == "replace_in_file":
                return workspace.replace_in_file(
                    arguments["path"], arguments["old_string"], arguments["new_string"]
                )
            if name == "write_file":
                return workspace.write_file(arguments["path"], arguments["content"])
            if name == "finish":
                return "Finished. The orchestrator will now train and judge the change."
        except KeyError as exc:
            raise ToolError(f"{name}: missing argument {exc}") from None
        raise ToolError(f"unknown tool {name!r}")


def _block(block: Any) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    dumped: dict[str, Any] = block.model_dump(exclude_none=True)
    return dumped


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc).splitlines()[0][:300]


CLAUDE_TOOLS = "Read,Edit,Write,Glob,Grep"
CLAUDE_DENIED = "Bash,WebFetch,WebSearch,NotebookEdit"


class ClaudeCodeStrategy:
    """Runs `claude -p` in the work tree with file tools only; the orchestrator diffs what it did."""

    name = "llm"

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.executable = shutil.which("claude")
        if self.executable is None:
            raise SkylabError(
                "the Claude Code CLI (`claude`) is not installed: "
                "`npm install -g @anthropic-ai/claude-code`, or use the default --agent api"
            )

    def command(self, prompt: str) -> list[str]:
        return [
            str(self.executable),
            "-p",
            prompt,
            "--output-format",
            "json",
            "--model",
            self.config.llm.model,
            "--max-turns",
            str(self.config.llm.max_turns),
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            CLAUDE_TOOLS,
            "--disallowedTools",
            CLAUDE_DENIED,
        ]

    def propose(self, context: ProposalContext) -> Proposal | None:
        prompt = (
            rules(context)
            + f"\n\nEdit only {', '.join(self.config.editable_files)} in the current directory. "
            "When done, end your answer with one line: "
            "`DESCRIPTION: <the change> — hypothesis: <why it should help>`.\n\n"
            + build_context(context, self.config.llm.context_chars)
        )
        try:
            result = subprocess.run(
                self.command(prompt),
                cwd=context.workdir,
                capture_output=True,
                text=True,
                timeout=60 * 60,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return Proposal("unfinished: Claude Code ran for an hour")
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise SkylabError(f"the Claude Code CLI failed (exit {result.returncode}): {detail[0][:300]}")
        return parse_claude_output(result.stdout)


def parse_claude_output(stdout: str) -> Proposal:
    """The description and token usage from `claude -p --output-format json`."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        data = {"result": stdout}
    text = str(data.get("result", ""))
    description = next(
        (
            line.split(":", 1)[1].strip()
            for line in reversed(text.splitlines())
            if line.startswith("DESCRIPTION:")
        ),
        " ".join(text.split())[:200] or "change by Claude Code",
    )
    usage = data.get("usage") or {}
    tokens_in = sum(
        int(usage.get(k) or 0)
        for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    return Proposal(
        description, usage={"tokens_in": tokens_in, "tokens_out": int(usage.get("output_tokens") or 0)}
    )
